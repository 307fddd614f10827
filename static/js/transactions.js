// Transactions page: search is a plain GET form. On the unfiltered first page, live transactions
// are collected behind a "N new transactions" notice (announced: role=status) and prepended when
// it is clicked, focus then moving to the table.
(function () {
  'use strict';
  const table = document.getElementById('results');
  const notice = document.getElementById('new-notice');
  const button = document.getElementById('show-new');
  if (!table || !notice || !button || table.dataset.live !== 'true') return;
  const pending = [];

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
      // Drawn by live.js, which sent the events pending here.
      tbody.prepend(window.redbankTransactionRow(pending.shift()));
    }
    notice.hidden = true;
    // The button that had the focus is gone: keyboard and screen-reader users land on the rows.
    table.focus();
  });
})();
