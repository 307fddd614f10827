// Transfers: a form submits once (a double click sends nothing twice — the form's idempotency key
// makes a second submit a no-op anyway); the review page confirms with a passkey bound to this
// transfer. No inline script (CSP); messages via textContent only.
(function () {
  'use strict';

  const form = document.getElementById('transfer-form');
  if (form) {
    form.addEventListener('submit', function () {
      const button = document.getElementById('transfer-continue');
      if (button) button.disabled = true;
    });
  }

  const review = document.getElementById('review');
  const button = document.getElementById('confirm-passkey');
  if (!review || !button || !window.PublicKeyCredential) {
    if (button) button.hidden = true;
    return;
  }

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
  async function post(url, body) {
    const res = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: {
        'Content-Type': 'application/json', Accept: 'application/json',
        'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json().catch(function () { return {}; });
    if (!res.ok) throw new Error(data.error || ('The server answered ' + res.status + '.'));
    return data;
  }

  async function confirm() {
    const id = review.dataset.transfer;
    const options = await post('/api/v1/transfers/' + id + '/options');
    const pk = options.publicKey;
    pk.challenge = fromB64u(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    const a = await navigator.credentials.get({ publicKey: pk });
    await post('/api/v1/transfers/' + id + '/confirm', {
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
    });
    window.location.reload();
  }

  button.addEventListener('click', function () {
    button.disabled = true;
    confirm().catch(function (e) {
      const box = document.getElementById('passkey-error');
      box.textContent = e.name === 'NotAllowedError' ? 'The passkey request was cancelled or timed out.' : e.message;
      box.hidden = false;
    }).finally(function () { button.disabled = false; });
  });
})();
