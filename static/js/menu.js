// The header's menu on a narrow screen: the navigation folds behind a "Menu" button. Without this
// script the button stays hidden and the navigation shows in full, so nothing depends on it.
(function () {
  'use strict';
  const button = document.querySelector('.menu-toggle');
  const nav = document.getElementById('site-nav');
  if (!button || !nav) return;
  document.documentElement.classList.add('js-menu');
  button.hidden = false;
  function show(open) {
    button.setAttribute('aria-expanded', String(open));
    nav.classList.toggle('open', open);
  }
  button.addEventListener('click', function () {
    show(button.getAttribute('aria-expanded') !== 'true');
  });
  // Escape closes the open menu and gives the focus back to its button.
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && nav.classList.contains('open')) {
      show(false);
      button.focus();
    }
  });
})();
