// Dashboard: balance chart, biggest-spenders donut, and live updates fed by live.js.
// No inline scripts (CSP); data comes from the JSON API; text is inserted with textContent only.
(function () {
  'use strict';

  const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
  const time = new Intl.DateTimeFormat('en-US', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const WINDOW_MS = { '5m': 5 * 60e3, '1h': 3600e3, '24h': 86400e3 };
  // The charts take the page's colours (light or dark theme); on a narrow screen the donut's
  // legend goes under it.
  const css = getComputedStyle(document.documentElement);
  const colour = name => css.getPropertyValue(name).trim();
  if (window.Chart) {
    Chart.defaults.color = colour('--muted');
    Chart.defaults.borderColor = colour('--line');
  }
  const narrow = window.matchMedia('(max-width: 720px)');
  let windowName = '5m';
  let balanceChart = null;
  let spendersChart = null;

  async function getJSON(url) {
    const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (res.status === 401) { window.location.assign('/login'); throw new Error('signed out'); }
    if (!res.ok) throw new Error(url + ': ' + res.status);
    return res.json();
  }

  // The charts' text alternatives (for screen readers; the canvases describe themselves by them).
  const WINDOW_WORDS = { '5m': '5 minutes', '1h': 'hour', '24h': '24 hours' };
  function describeBalance(data) {
    const summary = document.getElementById('balance-summary');
    if (!summary) return;
    if (!data.length) {
      summary.textContent = 'No balance changes in the last ' + WINDOW_WORDS[windowName] + '.';
      return;
    }
    const ys = data.map(p => p.y);
    summary.textContent = 'Balance over the last ' + WINDOW_WORDS[windowName] + ': from ' +
      money.format(ys[0]) + ' to ' + money.format(ys[ys.length - 1]) + ', lowest ' +
      money.format(Math.min(...ys)) + ', highest ' + money.format(Math.max(...ys)) + '.';
  }
  function describeSpenders(spenders) {
    const list = document.getElementById('spenders-summary');
    if (!list) return;
    list.replaceChildren(...spenders.labels.map((label, i) => {
      const li = document.createElement('li');
      li.textContent = label + ': ' + money.format(spenders.series[i]);
      return li;
    }));
  }

  function drawBalance(points) {
    const data = points.map(p => ({ x: p.x, y: p.y }));
    describeBalance(data);
    if (balanceChart) {
      balanceChart.data.datasets[0].data = data;
      balanceChart.update('none');
      return;
    }
    balanceChart = new Chart(document.getElementById('balance-chart'), {
      type: 'line',
      data: { datasets: [{ label: 'Balance', data, borderColor: '#c8102e', backgroundColor: 'rgba(200,16,46,.08)', fill: true, pointRadius: 0, tension: 0.2 }] },
      options: {
        animation: false, maintainAspectRatio: false, parsing: false,
        scales: {
          x: { type: 'linear', ticks: { callback: v => time.format(new Date(v)), maxTicksLimit: 6 } },
          y: { ticks: { callback: v => money.format(v) } },
        },
        plugins: { legend: { display: false }, tooltip: { callbacks: { title: items => time.format(new Date(items[0].parsed.x)), label: item => money.format(item.parsed.y) } } },
      },
    });
  }

  function drawSpenders(spenders) {
    describeSpenders(spenders);
    if (spendersChart) {
      spendersChart.data.labels = spenders.labels;
      spendersChart.data.datasets[0].data = spenders.series;
      spendersChart.update();
      return;
    }
    spendersChart = new Chart(document.getElementById('spenders-chart'), {
      type: 'doughnut',
      data: { labels: spenders.labels, datasets: [{ data: spenders.series, backgroundColor: ['#c8102e', colour('--ink'), '#f59e0b', '#0a7d38', '#6366f1'] }] },
      options: { maintainAspectRatio: false, plugins: { legend: { position: narrow.matches ? 'bottom' : 'right' }, tooltip: { callbacks: { label: item => item.label + ': ' + money.format(item.parsed) } } } },
    });
  }

  async function loadBalance() { drawBalance(await getJSON('/api/v1/balance?window=' + encodeURIComponent(windowName))); }
  async function loadSpenders() { drawSpenders(await getJSON('/api/v1/spenders')); }

  // ---- live updates (events from live.js) ----
  function addTransaction(tx) {
    const tbody = document.querySelector('#recent tbody');
    if (!tbody || tbody.querySelector('tr[data-id="' + CSS.escape(String(tx.id)) + '"]')) return;
    const empty = tbody.querySelector('tr.empty');
    if (empty) empty.remove();
    // Drawn by live.js, which sends the events this answers.
    tbody.prepend(window.redbankTransactionRow(tx));
    while (tbody.rows.length > 10) tbody.deleteRow(tbody.rows.length - 1);
  }

  function addBalancePoint(point) {
    document.getElementById('balance').textContent = money.format(point.y);
    if (!balanceChart) return;
    const data = balanceChart.data.datasets[0].data;
    if (data.length && data[data.length - 1].x >= point.x) return;
    data.push({ x: point.x, y: point.y });
    const cutoff = point.x - WINDOW_MS[windowName];
    while (data.length && data[0].x < cutoff) data.shift();
    describeBalance(data);
    balanceChart.update('none');
  }

  // Security notices: a device new to the account signed in, or a factor was added from another
  // session. Each says what, where from and when, with a one-click way out.
  const clock = new Intl.DateTimeFormat('en-US', { hour: '2-digit', minute: '2-digit' });
  const FACTORS = { passkey: 'A passkey', totp: 'An authenticator app' };

  async function api(method, path) {
    const token = document.querySelector('meta[name="csrf-token"]').content;
    return fetch(path, { method, credentials: 'same-origin', headers: { 'X-CSRF-Token': token } });
  }

  // Signs out the session the notice names; when it is gone already (ended, or moved to a new
  // token by a step-up), every other session instead — the intruder's among them.
  async function notMe(notice) {
    if (notice.session) {
      const res = await api('DELETE', '/api/v1/sessions/' + encodeURIComponent(notice.session));
      if (res.ok) return 'That session is signed out. Consider changing your password and reviewing your security settings.';
      if (res.status !== 404) return 'Could not sign that session out (' + res.status + '). Try again from Sessions.';
    }
    const res = await api('POST', '/api/v1/sessions/revoke-others');
    return res.ok
      ? 'Every other session is signed out. Review your passkeys and authenticator app under Security.'
      : 'Could not sign the other sessions out (' + res.status + '). Try again from Sessions.';
  }

  function showSecurityNotice(notice) {
    const box = document.getElementById('security-notices');
    if (!box) return;
    const where = notice.device + ', ' + notice.ip + ', ' + clock.format(new Date(notice.at));
    let what;
    if (notice.type === 'new_sign_in') what = 'New sign-in: ' + where;
    else if (notice.type === 'factor_added') {
      what = (FACTORS[notice.factor] || 'A second factor') +
        (notice.name ? ' (“' + notice.name + '”)' : '') + ' was added to your account: ' + where;
    } else return;
    const card = document.createElement('section');
    card.className = 'card security-notice';
    card.dataset.type = notice.type;
    const text = document.createElement('p');
    text.textContent = what;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'danger not-me';
    button.textContent = notice.session ? 'Not me — sign that session out' : 'Not me — sign out every other session';
    const dismiss = document.createElement('button');
    dismiss.type = 'button';
    dismiss.className = 'link dismiss';
    dismiss.textContent = 'Dismiss';
    dismiss.addEventListener('click', () => card.remove());
    button.addEventListener('click', async () => {
      button.disabled = true;
      text.textContent = await notMe(notice);
      button.remove();
    });
    card.append(text, button, dismiss);
    box.prepend(card);
  }

  document.addEventListener('redbank:security', e => showSecurityNotice(e.detail));
  document.addEventListener('redbank:transaction', e => addTransaction(e.detail));
  document.addEventListener('redbank:balance', e => addBalancePoint(e.detail));
  document.addEventListener('redbank:spenders', e => drawSpenders(e.detail));

  document.querySelectorAll('button.window').forEach(button => {
    button.addEventListener('click', () => {
      windowName = button.dataset.window;
      document.querySelectorAll('button.window').forEach(b => b.classList.toggle('active', b === button));
      loadBalance().catch(console.error);
    });
  });

  Promise.all([loadBalance(), loadSpenders()]).catch(console.error);
})();
