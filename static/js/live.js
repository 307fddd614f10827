// Live updates over server-sent events (cookie-authenticated; no token in the URL).
// Re-dispatches each event as a DOM CustomEvent ('redbank:transaction', 'redbank:balance',
// 'redbank:spenders', 'redbank:security') for the page scripts. EventSource reconnects by itself with Last-Event-ID;
// when the server refuses a reconnect (e.g. 503 during a Redis outage) we reconnect ourselves,
// resuming after the last id we saw, unless the session is gone (then: back to the login page).
// It also draws a transaction event's table row (window.redbankTransactionRow) for dashboard.js and
// transactions.js, which need it on their page.
(function () {
  'use strict';
  const holder = document.querySelector('[data-last-id]');
  const status = document.getElementById('live-status');
  let lastId = holder ? holder.dataset.lastId : '';
  let delay = 1000;

  function setState(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  function forward(name) {
    return function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      document.dispatchEvent(new CustomEvent('redbank:' + name, { detail: JSON.parse(e.data) }));
    };
  }

  function connect() {
    const es = new EventSource('/events' + (lastId ? '?after=' + encodeURIComponent(lastId) : ''));
    es.onopen = function () { delay = 1000; setState('live', 'live'); };
    es.addEventListener('transaction', forward('transaction'));
    es.addEventListener('balance', forward('balance'));
    es.addEventListener('spenders', forward('spenders'));
    es.addEventListener('security', forward('security'));
    es.onerror = function () {
      if (es.readyState !== EventSource.CLOSED) { setState('reconnecting', 'reconnecting…'); return; }
      setState('reconnecting', 'reconnecting…');
      fetch('/api/v1/me', { credentials: 'same-origin' }).then(function (res) {
        if (res.status === 401) { window.location.assign('/login'); return; }
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 15000);
      }, function () { setTimeout(connect, delay); delay = Math.min(delay * 2, 15000); });
    };
  }

  // A transaction event as a row of the transactions table (the dashboard's recent list and the
  // transactions page draw the same row; the server renders the first rows alike).
  const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
  function cell(cls, text) {
    const td = document.createElement('td');
    td.setAttribute('role', 'cell');
    td.className = cls;
    td.textContent = text;
    return td;
  }
  window.redbankTransactionRow = function (tx) {
    const tr = document.createElement('tr');
    tr.setAttribute('role', 'row');
    tr.className = 'tx new';
    tr.dataset.id = String(tx.id);
    const t = document.createElement('time');
    t.dateTime = tx.transactionDate;
    t.textContent = new Date(tx.date).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
    const date = cell('date', '');
    date.appendChild(t);
    tr.append(date, cell('desc', tx.description), cell('vendor', tx.fromAccountName), cell('type', tx.transactionType),
      cell('num amount ' + (tx.amount > 0 ? 'credit' : 'debit'), money.format(tx.amount)), cell('num', money.format(tx.balanceAfter)));
    return tr;
  };

  if (window.EventSource) connect();
})();
