//! A software passkey for the tests, from the relying-party library's own ecosystem
//! (`webauthn-authenticator-rs`'s `SoftPasskey`: real P-256 keys, real signatures, a counter).
//! `SoftPasskey` only signs for credentials the server lists and cannot hold a resident key, so
//! this wrapper adds what a real passkey does: it remembers its credential and user handle, and
//! answers a sign-in that names no credential with them (like picking the account in the dialog).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use webauthn_authenticator_rs::prelude::{Url, WebauthnCError};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::{AuthenticatorBackendHashedClientData, WebauthnAuthenticator};
use webauthn_rs_proto::{
    AllowCredentials, CreationChallengeResponse, CredProps, PublicKeyCredential,
    PublicKeyCredentialCreationOptions, PublicKeyCredentialRequestOptions,
    RegisterPublicKeyCredential, RequestChallengeResponse, ResidentKeyRequirement,
};

/// A resident credential: relying party, credential id, user handle.
type Resident = (String, Vec<u8>, Vec<u8>);

pub struct Discoverable {
    inner: SoftPasskey,
    resident: Vec<Resident>,
}

impl AuthenticatorBackendHashedClientData for Discoverable {
    fn perform_register(
        &mut self,
        client_data_hash: Vec<u8>,
        mut options: PublicKeyCredentialCreationOptions,
        timeout_ms: u32,
    ) -> Result<RegisterPublicKeyCredential, WebauthnCError> {
        let resident = options.authenticator_selection.as_ref().is_some_and(|s| {
            s.require_resident_key || s.resident_key == Some(ResidentKeyRequirement::Required)
        });
        assert!(resident, "the server must ask for a discoverable credential");
        if let Some(selection) = options.authenticator_selection.as_mut() {
            selection.require_resident_key = false;
            selection.resident_key = None;
        }
        let rp = options.rp.id.clone();
        let handle: Vec<u8> = options.user.id.clone().into();
        let mut credential = self.inner.perform_register(client_data_hash, options, timeout_ms)?;
        self.resident.push((rp, credential.raw_id.as_slice().to_vec(), handle));
        credential.extensions.cred_props = Some(CredProps { rk: Some(true) });
        Ok(credential)
    }

    fn perform_auth(
        &mut self,
        client_data_hash: Vec<u8>,
        mut options: PublicKeyCredentialRequestOptions,
        timeout_ms: u32,
    ) -> Result<PublicKeyCredential, WebauthnCError> {
        let rp = options.rp_id.clone();
        if options.allow_credentials.is_empty() {
            let (_, id, _) = self
                .resident
                .iter()
                .rev()
                .find(|(r, _, _)| *r == rp)
                .ok_or(WebauthnCError::NoSelectedToken)?;
            options.allow_credentials = vec![AllowCredentials {
                type_: "public-key".into(),
                id: id.clone().into(),
                transports: None,
            }];
        }
        let mut credential = self.inner.perform_auth(client_data_hash, options, timeout_ms)?;
        let handle = self
            .resident
            .iter()
            .find(|(r, id, _)| *r == rp && id.as_slice() == credential.raw_id.as_slice())
            .map(|(_, _, handle)| handle.clone());
        credential.response.user_handle = handle.map(Into::into);
        Ok(credential)
    }
}

/// A passkey device (holding any number of credentials) used from `origin`.
pub struct Device {
    authenticator: WebauthnAuthenticator<Discoverable>,
    origin: Url,
}

impl Device {
    pub fn new(origin: &str) -> Self {
        // `true`: the authenticator reports user verification (a PIN or biometric), which the
        // server requires.
        let backend = Discoverable { inner: SoftPasskey::new(true), resident: Vec::new() };
        Device {
            authenticator: WebauthnAuthenticator::new(backend),
            origin: Url::parse(origin).unwrap(),
        }
    }

    /// Answers registration options (`POST /api/v1/passkeys/options`) with a new credential.
    pub fn register(&mut self, options: &Value) -> Value {
        let options: CreationChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let answer = self.authenticator.do_registration(self.origin.clone(), options).unwrap();
        serde_json::to_value(answer).unwrap()
    }

    /// Answers sign-in options with an assertion of its credential for that relying party.
    pub fn sign(&mut self, options: &Value) -> Value {
        let options: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let answer = self.authenticator.do_authentication(self.origin.clone(), options).unwrap();
        serde_json::to_value(answer).unwrap()
    }
}
