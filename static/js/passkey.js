// Passkeys (WebAuthn) in the browser: sign in on /login, confirm on /login/verify (second step
// or step-up), add one on /security; `window.redbankPasskey.assert` serves other pages (the
// transfer review). The server sends WebAuthn options as JSON with binary fields
// in base64url; this converts them for navigator.credentials and the answer back. No inline
// script (CSP); messages are set with textContent only.
(function () {
  'use strict';

  function fromB64u(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
  }
  function toB64u(buf) {
    let text = '';
    new Uint8Array(buf).forEach(function (b) { text += String.fromCharCode(b); });
    return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) return meta.content;
    const input = document.querySelector('#login-form input[name="csrf"]');
    return input ? input.value : '';
  }

  async function post(url, body) {
    const res = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-Token': csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json().catch(function () { return {}; });
    if (res.status === 401 && data.error === 'step_up_required') {
      window.location.assign('/login/verify?next=' + encodeURIComponent(window.location.pathname));
      throw new Error('step-up');
    }
    if (!res.ok) {
      const e = new Error(data.error || ('The server answered ' + res.status + '.'));
      e.field = data.field;
      throw e;
    }
    return data;
  }

  function showError(e) {
    const box = document.getElementById('passkey-error');
    if (!box || e.message === 'step-up') return;
    box.textContent = e.name === 'NotAllowedError'
      ? 'The passkey request was cancelled or timed out.'
      : (e.message || 'Something went wrong with the passkey.');
    box.hidden = false;
  }

  // A first factor needs the code e-mailed for it: shows the code step and resolves with what
  // the user typed when they press Continue (a click, so the passkey prompt that follows has the
  // user gesture browsers want).
  function emailCode() {
    const step = document.getElementById('passkey-email-step');
    const input = document.getElementById('passkey-email-code');
    const button = document.getElementById('passkey-email-continue');
    step.hidden = false;
    input.focus();
    return new Promise(function (resolve) {
      button.addEventListener('click', function () { resolve(input.value.trim()); }, { once: true });
    });
  }

  // A new passkey for creation options `pk` (binary fields in base64url), as the JSON answer.
  async function create(pk) {
    pk.challenge = fromB64u(pk.challenge);
    pk.user.id = fromB64u(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    const cred = await navigator.credentials.create({ publicKey: pk });
    return {
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toB64u(cred.response.attestationObject),
        clientDataJSON: toB64u(cred.response.clientDataJSON),
        transports: cred.response.getTransports ? cred.response.getTransports() : null,
      },
      extensions: cred.getClientExtensionResults(),
    };
  }

  // The mailed link of an application without a password: the passkey opens the account (the
  // application's secret travels in this browser's cookie).
  async function openWithPasskey() {
    const button = document.getElementById('signup-passkey');
    const token = button.dataset.token;
    const options = await post('/api/v1/signup/passkey/options', { token: token });
    const answer = await create(options.publicKey);
    await post('/api/v1/email/verify', { token: token, passkey: answer });
    const done = document.getElementById('signup-opened');
    done.textContent = 'Your account is open. Sign in with your passkey: pick it when you sign in.';
    done.hidden = false;
    button.hidden = true;
    window.location.assign('/login');
  }

  async function register() {
    const input = document.getElementById('passkey-name');
    const name = input && input.value.trim() ? input.value.trim() : undefined;
    const options = await post('/api/v1/passkeys/options', name ? { name: name } : {});
    let code = options.email_code_required ? await emailCode() : undefined;
    const answer = await create(options.publicKey);
    for (;;) {
      try {
        await post('/api/v1/passkeys', code === undefined ? answer : Object.assign({ email_code: code }, answer));
        break;
      } catch (e) {
        // A mistyped code: the same passkey waits for the right one.
        if (e.field !== 'email_code') throw e;
        showError(e);
        code = await emailCode();
      }
    }
    window.location.reload();
  }

  // The passkey request the sign-in page keeps open for the browser's autofill, if any: a
  // button's own request cancels it first (one WebAuthn request at a time).
  let autofill = null;

  // A passkey's answer (JSON) to the request options `optionsUrl` gives for `body`; with
  // `conditional`, offered in the username field's autofill rather than in a dialog.
  async function answer(optionsUrl, body, conditional) {
    if (autofill && !conditional) { autofill.abort(); autofill = null; }
    // Set before the options arrive, so a button pressed meanwhile cancels this request too.
    const mine = conditional ? (autofill = new AbortController()) : null;
    const options = await post(optionsUrl, body);
    const pk = options.publicKey;
    pk.challenge = fromB64u(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    const request = { publicKey: pk };
    if (mine) {
      request.mediation = 'conditional';
      request.signal = mine.signal;
    }
    const a = await navigator.credentials.get(request);
    return {
      id: a.id,
      rawId: toB64u(a.rawId),
      type: a.type,
      response: {
        authenticatorData: toB64u(a.response.authenticatorData),
        clientDataJSON: toB64u(a.response.clientDataJSON),
        signature: toB64u(a.response.signature),
        userHandle: a.response.userHandle ? toB64u(a.response.userHandle) : null,
      },
      extensions: a.getClientExtensionResults(),
    };
  }

  async function assert(optionsUrl, answerUrl) {
    return post(answerUrl, await answer(optionsUrl));
  }

  async function signIn() {
    const done = await assert('/login/passkey/options', '/login/passkey');
    window.location.assign(done.redirect || '/dashboard');
  }

  async function stepUp(next) {
    await assert('/api/v1/step-up/passkey/options', '/api/v1/step-up/passkey');
    window.location.assign(next || '/security');
  }

  function on(id, action) {
    const button = document.getElementById(id);
    if (!button) return;
    if (!window.PublicKeyCredential) { button.hidden = true; return; }
    button.addEventListener('click', function () {
      button.disabled = true;
      action().catch(showError).finally(function () { button.disabled = false; });
    });
  }

  window.redbankPasskey = { assert: assert, answer: answer, showError: showError };

  // Passkey autofill (conditional mediation) on the sign-in page: where the browser offers
  // passkeys next to saved usernames, picking one signs in; nothing shows elsewhere, and a
  // cancelled or failed autofill request stays silent (the form and the button still work).
  async function offerAutofill() {
    if (!document.getElementById('login-username') || !window.PublicKeyCredential) return;
    const available = PublicKeyCredential.isConditionalMediationAvailable;
    if (!available || !(await available.call(PublicKeyCredential))) return;
    let a;
    try {
      a = await answer('/login/passkey/options', undefined, true);
    } catch (e) {
      return;
    }
    autofill = null;
    try {
      const done = await post('/login/passkey', a);
      window.location.assign(done.redirect || '/dashboard');
    } catch (e) {
      showError(e);
    }
  }

  const verify = document.getElementById('verify');
  offerAutofill();
  on('passkey-sign-in', signIn);
  on('passkey-add', register);
  on('signup-passkey', openWithPasskey);
  on('passkey-verify', function () {
    return verify && verify.dataset.mode === 'step-up' ? stepUp(verify.dataset.next) : signIn();
  });
})();
