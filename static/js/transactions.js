// Transactions page: nothing needed for search (a plain GET form); live "N new" notice is added
// by the live-updates feature.
(function () { 'use strict'; })();
