// Bookwarden pages: small improvements on pages that work without JavaScript.
// htmx requests carry the page's CSRF token in a header (forms carry it in a field already).
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});
// A button that asks before it acts: <button data-confirm="Delete this post?">.
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
// An htmx request the server refused (a 4xx or 5xx, which htmx does not swap in): send the same form the
// plain way, so the refusal is shown as the page the form gives without JavaScript. The refused request
// changed nothing; handled here, it is not logged as a script error.
document.addEventListener("htmx:beforeSwap", function (event) {
  if (!event.detail.isError) {
    return;
  }
  var source = event.detail.requestConfig && event.detail.requestConfig.elt;
  var form = source && source.closest ? source.closest("form") : null;
  if (form) {
    event.detail.isError = false;
    event.detail.shouldSwap = false;
    form.submit();
  }
});
