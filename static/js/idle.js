// The idle limit (PSD2: a bank session ends after a few minutes without activity): a minute
// before the server ends the session, a warning offers "Stay signed in" — a real request that
// extends it. When the time is up, the page goes to the sign-in form. The server says how many
// seconds are left (data-idle-left), counted from the page's load on the browser's own clock
// (whatever its time of day); live updates never extend it. No inline script (CSP).
(function () {
  'use strict';
  const left0 = document.body.dataset.idleLeft;
  if (left0 === undefined) return;
  let deadline = Date.now() + Number(left0) * 1000;
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
      if (res.ok && typeof data.idle_secs_left === 'number') {
        deadline = Date.now() + data.idle_secs_left * 1000;
        box.hidden = true;
      }
    } finally {
      stay.disabled = false;
    }
  });

  tick();
  setInterval(tick, 1000);
})();
