// Perch control panel: principals checked as you type, imports with progress, manifest files
// read into the plan preview. The pages work without it.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="perch-csrf"]');
  const csrf = meta ? meta.content : "";

  // Principal lists: each line checked by the server's own parser as you type.
  for (const area of document.querySelectorAll('textarea[data-validate="principals"]')) {
    const live = document.getElementById(area.id + "-live");
    let timer = null;
    area.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(async function () {
        const response = await fetch("/admin/check-principals?text=" + encodeURIComponent(area.value), { credentials: "same-origin" });
        if (!response.ok) return;
        const answer = await response.json();
        if (answer.problems.length === 0) {
          live.textContent = "";
          area.removeAttribute("aria-invalid");
        } else {
          live.textContent = answer.problems.map(function (p) { return "Line " + p.line + ": " + p.message; }).join(" ");
          area.setAttribute("aria-invalid", "true");
        }
      }, 250);
    });
  }

  // Imports: the file goes to the API as it is, with the upload's progress shown.
  const form = document.getElementById("import-form");
  if (form) {
    const file = document.getElementById("import-file");
    const progress = document.getElementById("import-progress");
    const status = document.getElementById("import-status");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!file.files.length) return;
      const request = new XMLHttpRequest();
      request.open("POST", form.dataset.upload);
      request.setRequestHeader("Content-Type", "application/x-ndjson");
      request.setRequestHeader("X-Perch-CSRF", csrf);
      progress.hidden = false;
      progress.value = 0;
      status.textContent = "Uploading…";
      request.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
        if (e.loaded === e.total) status.textContent = "Checking and importing…";
      });
      request.addEventListener("load", function () {
        let answer = {};
        try { answer = JSON.parse(request.responseText); } catch (_) { /* not JSON */ }
        if (request.status >= 200 && request.status < 300) {
          progress.value = 100;
          status.textContent = "Imported: " + JSON.stringify(answer);
        } else {
          status.textContent = "Nothing was imported: " + (answer.message || request.statusText);
        }
      });
      request.addEventListener("error", function () { status.textContent = "The upload failed; nothing was imported."; });
      request.send(file.files[0]);
    });
  }

  // The plan preview: manifest files read into the text box, documents joined by ---.
  for (const input of document.querySelectorAll("input[data-fills]")) {
    const target = document.getElementById(input.dataset.fills);
    input.addEventListener("change", async function () {
      const texts = [];
      for (const file of input.files) texts.push(await file.text());
      target.value = texts.join("\n---\n");
    });
  }
})();
