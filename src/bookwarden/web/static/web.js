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
