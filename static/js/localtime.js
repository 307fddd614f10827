// Times in the viewer's own time zone. The server writes every time as
// <time datetime="2026-12-06T03:37:00.000Z">2026-12-06 03:37:00 UTC</time>, which stays the text
// without this script; here each one (and each one a live update adds later) is rewritten with
// Intl.DateTimeFormat in the browser's time zone, the UTC text kept as its title.
(function () {
  'use strict';
  const format = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: 'numeric', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });
  function localize(el) {
    if (el.dataset.local || !el.dateTime || !el.dateTime.includes('T')) return;
    const at = new Date(el.dateTime);
    if (Number.isNaN(at.getTime())) return;
    el.title = el.textContent;
    el.textContent = format.format(at);
    el.dataset.local = '1';
  }
  function localizeIn(root) {
    if (root.matches && root.matches('time[datetime]')) localize(root);
    if (root.querySelectorAll) root.querySelectorAll('time[datetime]').forEach(localize);
  }
  localizeIn(document);
  new MutationObserver(function (changes) {
    changes.forEach(function (change) { change.addedNodes.forEach(localizeIn); });
  }).observe(document.body, { childList: true, subtree: true });
})();
