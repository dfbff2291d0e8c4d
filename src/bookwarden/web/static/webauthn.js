// A security key as the second step of a sign-in, through the API's own ceremony:
// POST options -> navigator.credentials.get() -> POST the assertion. The session cookie the
// sign-in page set is sent along (same origin); X-Requested-With satisfies the API's same-origin rule.
(function () {
  "use strict";
  var section = document.querySelector('[data-webauthn="sign-in"]');
  if (!section || !window.PublicKeyCredential) {
    return; // no script support for security keys: the code form above still works
  }
  section.hidden = false;
  var error = document.getElementById("webauthn-error");

  function bytes(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(raw, function (c) { return c.charCodeAt(0); }).buffer;
  }
  function text(buffer) {
    var out = "";
    new Uint8Array(buffer).forEach(function (b) { out += String.fromCharCode(b); });
    return btoa(out).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "fetch" },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().then(function (json) {
        if (!response.ok) { throw new Error(json.detail || "the security key was refused"); }
        return json;
      });
    });
  }
  function show(message) {
    error.textContent = message;
    error.hidden = false;
  }

  document.getElementById("use-security-key").addEventListener("click", function () {
    error.hidden = true;
    post(section.dataset.options).then(function (answer) {
      var options = answer.options;
      options.challenge = bytes(options.challenge);
      (options.allowCredentials || []).forEach(function (c) { c.id = bytes(c.id); });
      return navigator.credentials.get({ publicKey: options });
    }).then(function (credential) {
      var response = credential.response;
      return post(section.dataset.verify, {
        credential: {
          id: credential.id,
          rawId: text(credential.rawId),
          type: credential.type,
          response: {
            clientDataJSON: text(response.clientDataJSON),
            authenticatorData: text(response.authenticatorData),
            signature: text(response.signature),
            userHandle: response.userHandle ? text(response.userHandle) : null
          },
          clientExtensionResults: credential.getClientExtensionResults()
        }
      });
    }).then(function () {
      window.location.assign(section.dataset.done);
    }).catch(function (failure) {
      show(failure && failure.message ? failure.message : "the security key did not answer");
    });
  });
})();
