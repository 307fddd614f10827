// Transfers: a form submits once (a double click sends nothing twice — the form's idempotency key
// makes a second submit a no-op anyway); the review page confirms with a passkey bound to this
// transfer, through passkey.js (loaded before this file). No inline script (CSP).
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
  if (!review || !button || !window.PublicKeyCredential || !window.redbankPasskey) {
    if (button) button.hidden = true;
    return;
  }

  async function confirm() {
    const id = review.dataset.transfer;
    const base = '/api/v1/transfers/' + encodeURIComponent(id);
    const done = await window.redbankPasskey.assert(base + '/options', base + '/confirm');
    // A closing's payout ended this session with the account.
    if (done && done.closes_account && done.status === 'completed') {
      window.location.assign('/closed');
      return;
    }
    window.location.reload();
  }

  button.addEventListener('click', function () {
    button.disabled = true;
    confirm().catch(window.redbankPasskey.showError).finally(function () { button.disabled = false; });
  });
})();
