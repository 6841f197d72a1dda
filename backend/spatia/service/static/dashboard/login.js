"use strict";
// A single-use sign-in code arrives in the link's fragment (never sent to the server in a request
// line). It is traded once for an HttpOnly, SameSite=Strict cookie, and the link is replaced in the
// browser's history at once. Without a code, the token can be pasted.
(function () {
  const status = document.getElementById("status");
  const form = document.getElementById("form");
  async function signIn(body) {
    const response = await fetch("/v1/session", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    if (response.status === 204) {
      location.replace("/#/");
      return;
    }
    const problem = await response.json().catch(function () { return null; });
    status.textContent = (problem && problem.error ? problem.error.message : "Refused.") + " Paste the token:";
    form.hidden = false;
  }
  const params = new URLSearchParams(location.hash.slice(1));
  const code = params.get("code");
  history.replaceState(null, "", "/login");  // the code leaves the address bar and history at once
  if (code) {
    signIn({code: code});
  } else {
    status.textContent = "Paste the service's token.";
    form.hidden = false;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    signIn({token: document.getElementById("token").value.trim()});
  });
})();
