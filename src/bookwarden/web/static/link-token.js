// One-time links carry their token after "#token=": browsers never send a fragment to a server, so it
// stays out of logs. This copies it into the page's form and takes it out of the address bar.
// Without JavaScript the field is visible and the token can be pasted into it.
(function () {
  "use strict";
  var field = document.querySelector("[data-link-token]");
  var match = window.location.hash.match(/token=([A-Za-z0-9_.\-]+)/);
  if (!field || !match) {
    return;
  }
  field.value = match[1];
  var wrapper = field.closest("[data-link-token-field]");
  if (wrapper) {
    wrapper.hidden = true;
  }
  history.replaceState(null, "", window.location.pathname + window.location.search);
})();
