// New-password fields (`input[data-strength]`): a strength meter that asks the server's own rules
// (POST /api/v1/password/check) after each pause in typing, with the name and address the page
// knows (the final check, on submit, also knows the account's own). The reset page: a passkey as the second factor. No inline script (CSP); messages are
// set with textContent only.
(function () {
  'use strict';

  const LABELS = ['Very weak', 'Weak', 'Fair', 'Strong', 'Very strong'];

  function meter(input) {
    const box = document.getElementById(input.getAttribute('aria-describedby'));
    if (!box) return;
    const bar = box.querySelector('meter');
    const text = box.querySelector('span');
    // The words the password should not contain: given on the page, or typed in other fields.
    function inputs() {
      let text = input.dataset.userInputs || '';
      (input.dataset.userInputsFrom || '').split(' ').forEach(function (id) {
        const field = document.getElementById(id);
        if (field) text += ' ' + field.value + ' ' + field.value.split('@')[0];
      });
      return text.split(/[\s@]+/).filter(function (w) { return w.length >= 3; });
    }
    let timer = null;
    let asked = 0;
    function show(verdict) {
      bar.hidden = false;
      bar.value = verdict.score;
      text.textContent = ' ' + LABELS[verdict.score] + (verdict.acceptable ? '' : ': not accepted') +
        (verdict.message ? '. ' + verdict.message : '.');
      input.setCustomValidity(verdict.acceptable ? '' : verdict.message);
    }
    async function ask() {
      const mine = ++asked;
      if (!input.value) { bar.hidden = true; text.textContent = ''; input.setCustomValidity(''); return; }
      try {
        const res = await fetch('/api/v1/password/check', {
          method: 'POST',
          credentials: 'omit',
          headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
          body: JSON.stringify({
            password: input.value,
            user_inputs: inputs(),
            has_second_factor: input.dataset.secondFactor === 'true',
          }),
        });
        if (res.ok && mine === asked) show(await res.json());
      } catch (e) { /* the server checks again on submit */ }
    }
    input.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(ask, 300);
    });
  }

  document.querySelectorAll('input[data-strength]').forEach(meter);

  // The reset page: with "My passkey" chosen, submitting first runs the passkey ceremony bound to
  // this link, then sends its answer with the form.
  const form = document.getElementById('reset-form');
  const choice = document.getElementById('reset-passkey-choice');
  if (form && choice && window.PublicKeyCredential) {
    choice.hidden = false;
    const code = document.getElementById('reset-code-field');
    const sync = function () {
      const method = form.querySelector('input[name="method"]:checked');
      code.hidden = method && method.value === 'passkey';
    };
    form.querySelectorAll('input[name="method"]').forEach(function (r) { r.addEventListener('change', sync); });
    sync();
    form.addEventListener('submit', function (event) {
      const method = form.querySelector('input[name="method"]:checked');
      const answer = form.querySelector('input[name="passkey"]');
      if (!method || method.value !== 'passkey' || answer.value) return;
      event.preventDefault();
      const token = form.querySelector('input[name="token"]').value;
      window.redbankPasskey.answer('/api/v1/password/reset/passkey', { token: token })
        .then(function (a) { answer.value = JSON.stringify(a); form.submit(); })
        .catch(window.redbankPasskey.showError);
    });
  }
})();
