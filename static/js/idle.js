// The idle limit (PSD2: a bank session ends after a few minutes without activity): a minute
// before the server ends the session, a warning offers "Stay signed in" — a real request that
// extends it. When the time is up, the page goes to the sign-in form. The deadline comes from the
// server (data-idle-deadline, ms); live updates never extend it. No inline script (CSP).
(function () {
  'use strict';
  let deadline = Number(document.body.dataset.idleDeadline || 0);
  if (!deadline) return;
  const box = document.getElementById('idle-warning');
  const left = document.getElementById('idle-left');
  const stay = document.getElementById('idle-stay');
  const WARN_MS = 60000;

  function csrfToken() {
    const input = document.querySelector('form[action="/logout"] input[name="csrf"]');
    return input ? input.value : '';
  }

  function tick() {
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      window.location.assign('/login');
      return;
    }
    if (remaining <= WARN_MS) {
      const seconds = Math.ceil(remaining / 1000);
      left.textContent = 'in ' + seconds + ' second' + (seconds === 1 ? '' : 's');
      if (box.hidden) {
        box.hidden = false;
        stay.focus();
      }
    } else if (!box.hidden) {
      box.hidden = true;
    }
  }

  stay.addEventListener('click', async function () {
    stay.disabled = true;
    try {
      const res = await fetch('/api/v1/session/refresh', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { Accept: 'application/json', 'X-CSRF-Token': csrfToken() },
      });
      if (res.status === 401) { window.location.assign('/login'); return; }
      const data = await res.json();
      if (res.ok && data.idle_expires_at) {
        deadline = Date.parse(data.idle_expires_at);
        box.hidden = true;
      }
    } finally {
      stay.disabled = false;
    }
  });

  tick();
  setInterval(tick, 1000);
})();
