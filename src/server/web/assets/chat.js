// Perch chat client: live messages, older pages on scroll, posting without a reload.
// Every text is set with textContent: nothing a message holds is ever parsed as HTML.
"use strict";
(function () {
  const room = document.getElementById("room");
  if (!room) return;
  const name = room.dataset.room;
  const base = "/v1/rooms/" + encodeURIComponent(name);
  const list = document.getElementById("messages");
  const status = document.getElementById("live-status");
  const csrf = document.querySelector('meta[name="perch-csrf"]').content;

  function shown(id) {
    return list.querySelector('li[data-id="' + String(Number(id)) + '"]') !== null;
  }

  function item(message) {
    const li = document.createElement("li");
    li.dataset.id = String(message.id);
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = message.author;
    const time = document.createElement("time");
    time.dateTime = message.postedAt;
    time.textContent = String(message.postedAt).slice(0, 16).replace("T", " ");
    const body = document.createElement("p");
    body.className = "body";
    body.textContent = message.body;
    li.append(author, " ", time);
    if (message.replaced) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "replaced";
      li.append(" ", tag);
    }
    li.append(body);
    return li;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }

  function append(message) {
    if (shown(message.id)) return;
    const follow = nearBottom();
    // Keep ids in order even if a post's own answer and its event cross.
    let after = null;
    for (const li of list.children) {
      if (Number(li.dataset.id) > message.id) { after = li; break; }
    }
    list.insertBefore(item(message), after);
    const empty = document.getElementById("no-messages");
    if (empty) empty.remove();
    if (follow) window.scrollTo(0, document.body.scrollHeight);
  }

  function newestShown() {
    const last = list.lastElementChild;
    return last ? Number(last.dataset.id) : null;
  }

  // Live: the room's stream, resumed after the newest message the page shows; the browser
  // resumes by Last-Event-ID after a dropped connection, and ids already shown are skipped.
  if (room.dataset.live === "on" && window.EventSource) {
    const newest = newestShown();
    const url = base + "/events" + (newest !== null ? "?lastEventId=" + newest : "");
    const events = new EventSource(url);
    events.addEventListener("open", function () { status.textContent = "Live."; });
    events.addEventListener("error", function () {
      // A refused stream (no right to read the room live) is closed for good; a dropped one
      // is retried by the browser, which sends Last-Event-ID.
      status.textContent = events.readyState === EventSource.CLOSED
        ? "Live updates are not available to you in this room."
        : "Connection lost; reconnecting…";
    });
    events.addEventListener("message", function (event) {
      try { append(JSON.parse(event.data)); } catch (_) { /* not a message */ }
    });
    window.addEventListener("pagehide", function () { events.close(); });
  }

  // Older pages: when the "Older messages" link comes into view, or is followed.
  const older = document.getElementById("older");
  let loading = false;
  async function loadOlder(event) {
    const link = older && older.querySelector("a");
    if (!link || loading) return;
    if (event) event.preventDefault();
    loading = true;
    try {
      // A search's older pages are older matches: the query goes along.
      const q = link.dataset.q ? "&q=" + encodeURIComponent(link.dataset.q) : "";
      const response = await fetch(base + "/messages?limit=50&before=" + encodeURIComponent(link.dataset.before) + q, { credentials: "same-origin" });
      if (!response.ok) { status.textContent = "Cannot load older messages."; return; }
      const page = await response.json();
      const height = document.body.scrollHeight;
      const first = list.firstElementChild;
      for (const message of page.items) {
        if (!shown(message.id)) list.insertBefore(item(message), first);
      }
      window.scrollBy(0, document.body.scrollHeight - height);
      if (page.before) {
        link.dataset.before = String(page.before);
        link.href = "?before=" + page.before + q;
      } else {
        older.remove();
      }
    } finally {
      loading = false;
    }
  }
  if (older) {
    older.querySelector("a").addEventListener("click", loadOlder);
    if (window.IntersectionObserver && room.dataset.live === "on") {
      new IntersectionObserver(function (entries) {
        if (entries.some(function (entry) { return entry.isIntersecting; })) loadOlder();
      }).observe(older);
    }
  }

  // Posting through the API; the form still works without this script.
  const composer = document.getElementById("composer");
  if (composer) {
    const text = document.getElementById("message-body");
    const problem = document.getElementById("post-error");
    composer.addEventListener("submit", async function (event) {
      event.preventDefault();
      const body = text.value;
      if (!body.trim()) return;
      problem.textContent = "";
      const key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
      try {
        const response = await fetch(base + "/messages", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-Perch-CSRF": csrf, "Idempotency-Key": key },
          body: JSON.stringify({ body: body }),
        });
        const answer = await response.json().catch(function () { return {}; });
        if (response.ok) {
          text.value = "";
          if (room.dataset.live === "on") append(answer);
          else status.textContent = "Posted.";
        } else {
          problem.textContent = "Not posted: " + (answer.message || response.statusText);
        }
      } catch (_) {
        problem.textContent = "Not posted: the server cannot be reached. Try again.";
      }
      text.focus();
    });
    text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
  }
  if (room.dataset.live === "on") window.scrollTo(0, document.body.scrollHeight);
})();
