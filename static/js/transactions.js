// Transactions page: search is a plain GET form. On the unfiltered first page, live transactions
// are collected behind a "N new transactions" notice (announced: role=status) and prepended when
// it is clicked, focus then moving to the table.
(function () {
  'use strict';
  const table = document.getElementById('results');
  const notice = document.getElementById('new-notice');
  const button = document.getElementById('show-new');
  if (!table || !notice || !button || table.dataset.live !== 'true') return;
  const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
  const pending = [];

  function cell(cls, text) {
    const td = document.createElement('td');
    td.setAttribute('role', 'cell');
    td.className = cls;
    td.textContent = text;
    return td;
  }

  document.addEventListener('redbank:transaction', function (e) {
    pending.push(e.detail);
    button.textContent = pending.length + ' new transaction' + (pending.length === 1 ? '' : 's');
    notice.hidden = false;
  });

  button.addEventListener('click', function () {
    const tbody = table.tBodies[0];
    const empty = tbody.querySelector('tr.empty');
    if (empty) empty.remove();
    while (pending.length) {
      const tx = pending.shift();
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
      tbody.prepend(tr);
    }
    notice.hidden = true;
    // The button that had the focus is gone: keyboard and screen-reader users land on the rows.
    table.focus();
  });
})();
