// A hook's page: the draft editor (autosave, syntax errors at their line, diff, dry run,
// publish and rollback with replay progress), the live request log and state (the owner's
// WebSocket feed, polling when it is down), and the test request form. See docs/ui.md.
(function () {
  "use strict";

  const WR = window.WR;
  const config = JSON.parse(document.getElementById("hook-config").textContent);
  const api = config.api; // /api/hooks/<id>/
  const $ = (selector) => document.querySelector(selector);
  const el = WR.el;
  const CM = window.WRCodeMirror || null;

  function highlight(root) {
    if (!CM) return;
    root.querySelectorAll("pre[data-highlight]").forEach((pre) => {
      if (pre.dataset.highlighted || pre.textContent.length > 100000) return;
      CM.highlightInto(pre, pre.textContent, pre.dataset.highlight);
      pre.dataset.highlighted = "1";
    });
  }

  // --- The editor -----------------------------------------------------------------------------

  const fallback = $("#code-fallback");
  let view = null;
  let settingDoc = false; // a programmatic change (rollback) is not an edit to save

  function getCode() {
    return view ? view.state.doc.toString() : fallback.value;
  }

  function setCode(text) {
    settingDoc = true;
    if (view) CM.setDoc(view, text);
    else fallback.value = text;
    settingDoc = false;
  }

  function showErrors(errors) {
    const box = $("#code-error");
    if (view) CM.setErrors(view, errors);
    if (!errors.length) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    const { line, column, message } = errors[0];
    box.textContent = "";
    const where = line ? "Line " + line + (column ? ", column " + column : "") + ": " : "";
    box.appendChild(el("strong", {}, where));
    box.appendChild(document.createTextNode(message));
    box.hidden = false;
  }

  if (CM) {
    fallback.hidden = true;
    const label = fallback.previousElementSibling;
    if (label && label.tagName === "LABEL") label.hidden = true;
    view = CM.createEditor($("#editor"), {
      doc: fallback.value,
      label: "Draft code (Python)",
      onChange: () => {
        if (!settingDoc) draftEdited();
      },
    });
    // Out of sight at load (a phone), the editor only estimates its line heights; measure it
    // when it scrolls into view so the gutter lines up with the code.
    if ("IntersectionObserver" in window) {
      new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting)) view.requestMeasure();
      }).observe(view.dom);
    }
  } else {
    fallback.addEventListener("input", () => draftEdited());
  }

  // --- Autosave -------------------------------------------------------------------------------

  const status = $("#draft-status");
  let savedCode = getCode();
  let saveTimer = null;
  let saving = null; // the save in flight
  let saveError = null; // {line, column, message} of a refused draft

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function draftEdited() {
    setStatus("dirty", "Unsaved changes");
    clearTimeout(saveTimer);
    saveTimer = setTimeout(save, 700);
  }

  function setDraftChanged(changed) {
    $("#draft-changed").textContent = changed
      ? "The draft differs from the live version."
      : "The draft is the live code.";
  }

  async function save() {
    clearTimeout(saveTimer);
    if (saving) {
      await saving;
      if (getCode() === savedCode && !saveError) return;
    }
    const code = getCode();
    if (code === savedCode && !saveError) {
      setStatus("saved", "Saved");
      return;
    }
    setStatus("saving", "Saving…");
    // The UI's own autosave route: a syntax error is a 200 answer there, so typing never
    // fills the console with failed requests (the API's PUT .../draft/ answers 400).
    saving = WR.api("POST", config.draftUrl, { code })
      .then((result) => {
        if (result.ok && result.data.saved) {
          savedCode = code;
          const hadError = saveError !== null;
          saveError = null;
          showErrors([]);
          setDraftChanged(result.data.changed);
          if (getCode() === code) setStatus("saved", "Saved");
          else draftEdited();
          // What was said about the old draft no longer holds.
          if (hadError && progressBox.dataset.state === "failed") progressBox.hidden = true;
          setTimeout(refreshOpenPanels, 0);
        } else if (result.ok && result.data.error) {
          const error = result.data.error;
          saveError = { line: error.line, column: error.column, message: error.message };
          showErrors([saveError]);
          setStatus(
            "error",
            error.line ? "Not saved: error on line " + error.line : "Not saved: " + error.message,
          );
        } else {
          setStatus("error", "Not saved: " + WR.apiMessage(result));
          saveTimer = setTimeout(save, 5000);
        }
      })
      .catch(() => {
        setStatus("error", "Not saved: offline? Retrying…");
        saveTimer = setTimeout(save, 5000);
      })
      .finally(() => {
        saving = null;
      });
    await saving;
  }

  // Saved and valid: what publish, diff and dry run need first.
  async function flush() {
    await save();
    return getCode() === savedCode && !saveError;
  }

  window.addEventListener("beforeunload", (event) => {
    if (getCode() !== savedCode) {
      save();
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // --- Diff with the live version -------------------------------------------------------------

  const diffButton = $("#diff-button");
  const diffPanel = $("#diff-panel");

  async function showDiff() {
    const output = $("#diff-output");
    output.textContent = "Loading…";
    if (!(await flush())) {
      output.textContent = "Fix the error in the draft first: it is not saved.";
      return;
    }
    const result = await WR.api("GET", api + "versions/diff/");
    if (!result.ok) {
      output.textContent = WR.apiMessage(result);
      return;
    }
    output.textContent = "";
    if (!result.data.diff) {
      output.textContent = "No changes: the draft is the live code.";
      return;
    }
    for (const line of result.data.diff.split("\n")) {
      if (!line) continue;
      let kind = "ctx";
      if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
      else if (line.startsWith("@@")) kind = "hunk";
      else if (line.startsWith("+")) kind = "add";
      else if (line.startsWith("-")) kind = "del";
      output.appendChild(el("span", { class: "diff-" + kind, text: line + "\n" }));
    }
  }

  // The diff and the dry run open below the editor describe one draft and one live version:
  // after an edit is saved or a version goes live, the diff is redone and the dry run marked.
  function refreshOpenPanels(reason) {
    if (!diffPanel.hidden) showDiff();
    const dryRun = $("#dry-run-output");
    if (!$("#dry-run-panel").hidden && dryRun.dataset.done) {
      delete dryRun.dataset.done;
      dryRun.replaceChildren(
        el("p", { class: "message message-warning small", text: (reason || "The draft changed") + " since this dry run: run it again to see what it does now." }),
      );
    }
  }

  diffButton.addEventListener("click", () => {
    const open = diffPanel.hidden;
    diffPanel.hidden = !open;
    diffButton.setAttribute("aria-expanded", String(open));
    if (open) showDiff();
  });

  // --- Dry run ---------------------------------------------------------------------------------

  function jsonBlock(value) {
    const pre = el("pre", { class: "json mono scroll", "data-highlight": "json" });
    pre.textContent = JSON.stringify(value, null, 2);
    return pre;
  }

  function diffOps(ops) {
    const list = el("ul", { class: "diff-ops mono" });
    const short = (value) => {
      const text = JSON.stringify(value);
      return text === undefined ? "undefined" : text.length > 200 ? text.slice(0, 199) + "…" : text;
    };
    for (const op of ops) {
      const sign = op.op === "add" ? "+" : op.op === "remove" ? "−" : "~";
      const text =
        op.op === "replace"
          ? ": " + short(op.old) + " → " + short(op.value)
          : op.op === "add"
            ? ": " + short(op.value)
            : ": " + short(op.old);
      list.appendChild(
        el("li", { class: "op op-" + op.op }, el("span", { class: "op-sign", text: sign }), " " + (op.path || "(the whole state)") + text),
      );
    }
    return list;
  }

  $("#dry-run-button").addEventListener("click", async () => {
    const panel = $("#dry-run-panel");
    const output = $("#dry-run-output");
    const button = $("#dry-run-button");
    panel.hidden = false;
    if (!(await flush())) {
      output.textContent = "Fix the error in the draft first: it is not saved.";
      return;
    }
    output.textContent = "Running the draft over the stored history…";
    button.disabled = true;
    try {
      const result = await WR.api("POST", api + "dry-run/", {});
      output.textContent = "";
      if (!result.ok) {
        const error = result.data && result.data.error;
        if (error && error.line) showErrors([{ line: error.line, column: error.column, message: error.message }]);
        output.appendChild(el("p", { class: "text-danger", text: WR.apiMessage(result) }));
        return;
      }
      const data = result.data;
      output.dataset.done = "1";
      const summary =
        "Folded " + data.requests + " of " + data.history + " applied request" + (data.history === 1 ? "" : "s") +
        (data.truncated ? " (only the most recent, from a null state)" : "") + ". " +
        (data.failures ? data.failures + " failed." : "None failed.") + " Nothing was changed.";
      output.appendChild(el("p", { class: data.failures ? "text-danger" : "" , text: summary }));
      output.appendChild(el("h4", { text: "Resulting state" }));
      output.appendChild(jsonBlock(data.state));
      output.appendChild(el("h4", { text: "Compared with the live state (seq " + data.live_seq + ")" }));
      output.appendChild(data.diff.length ? diffOps(data.diff) : el("p", { class: "muted", text: "The same as the live state." }));
      if (data.report.length) {
        output.appendChild(el("h4", { text: "Errors and output" }));
        const list = el("ul", { class: "report" });
        for (const item of data.report) {
          const entry = el("li", {}, el("strong", { text: "#" + item.seq + " " }), el("span", { class: "badge badge-" + item.outcome, text: item.outcome }));
          if (item.error) {
            entry.appendChild(el("p", { class: "text-danger", text: item.error.type + ": " + item.error.message }));
            if (item.error.traceback) entry.appendChild(el("pre", { class: "traceback mono", text: item.error.traceback }));
          }
          if (item.console) entry.appendChild(el("pre", { class: "console mono", text: item.console }));
          list.appendChild(entry);
        }
        output.appendChild(list);
      }
      highlight(output);
    } catch (error) {
      output.textContent = "The dry run did not finish: " + error.message;
    } finally {
      button.disabled = false;
    }
  });

  // --- Publish and rollback, with the replay's progress ---------------------------------------

  const progressBox = $("#publish-progress");
  const progressLabel = $("#publish-label");
  const progressBar = $("#publish-bar");
  let tracking = null; // {number, rollback}

  function showProgress(text, applied, total, state) {
    progressBox.hidden = false;
    progressBox.dataset.state = state;
    progressLabel.textContent = text;
    progressBar.max = Math.max(total, 1);
    progressBar.value = state === "done" ? progressBar.max : Math.min(applied, total);
  }

  async function track(number, rollback) {
    tracking = { number, rollback };
    const publishButton = $("#publish-button");
    publishButton.disabled = true;
    const what = rollback ? "Rolling back: version " + number : "Version " + number;
    while (tracking && tracking.number === number) {
      const result = await WR.api("GET", api + "versions/" + number + "/");
      if (!result.ok) {
        showProgress("Lost track of version " + number + ": " + WR.apiMessage(result), 0, 1, "failed");
        break;
      }
      const version = result.data;
      if (version.status === "building") {
        const p = version.progress || { applied: 0, total: 0 };
        showProgress(what + " is replaying the history: " + p.applied + " of " + p.total + " requests", p.applied, p.total, "running");
      } else if (version.status === "published" || version.status === "archived") {
        showProgress(
          "Done: version " + number + " is live" + (version.failures ? " (" + version.failures + " request" + (version.failures === 1 ? "" : "s") + " failed during the replay)" : "") + ".",
          1, 1, "done",
        );
        $("#stat-version").textContent = "v" + number;
        config.liveVersion = number;
        if (rollback) {
          const draft = await WR.api("GET", api + "draft/");
          if (draft.ok) {
            setCode(draft.data.code);
            savedCode = draft.data.code;
            saveError = null;
            showErrors([]);
            setStatus("saved", "Saved");
            setDraftChanged(draft.data.changed);
          }
        } else {
          const draft = await WR.api("GET", api + "draft/");
          if (draft.ok) setDraftChanged(draft.data.changed);
        }
        refreshState();
        refreshLog();
        refreshOpenPanels("Version " + number + " went live");
        break;
      } else {
        showProgress("Version " + number + " did not go live: " + (version.error || version.status), 0, 1, "failed");
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    tracking = null;
    publishButton.disabled = false;
    refreshVersions();
  }

  $("#publish-button").addEventListener("click", async () => {
    if (!(await flush())) {
      showProgress("Not published: fix the error in the draft first.", 0, 1, "failed");
      $("#code-error").focus();
      return;
    }
    showProgress("Publishing…", 0, 1, "running");
    const result = await WR.api("POST", api + "publish/", {});
    if (!result.ok) {
      const error = result.data && result.data.error;
      if (error && error.line) showErrors([{ line: error.line, column: error.column, message: error.message }]);
      showProgress("Not published: " + WR.apiMessage(result), 0, 1, "failed");
      return;
    }
    track(result.data.version.number, false);
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-rollback]");
    if (!button) return;
    const number = Number(button.dataset.rollback);
    const message =
      "Roll back to version " + number + "? It replays the history with that code, then goes live; " +
      "the editor then shows its code (your current draft is replaced).";
    if (!window.confirm(message)) return;
    button.disabled = true;
    const result = await WR.api("POST", api + "versions/" + number + "/rollback/");
    if (!result.ok) {
      showProgress("Not rolled back: " + WR.apiMessage(result), 0, 1, "failed");
      button.disabled = false;
      return;
    }
    track(result.data.version.number, true);
  });

  if (config.building) track(config.building, false);

  async function refreshVersions() {
    try {
      const panel = $("#versions-panel");
      panel.innerHTML = await WR.fetchHtml(config.versionsUrl);
      WR.localTimes(panel);
    } catch (error) {
      /* the next change refreshes it */
    }
  }

  // --- The live state ---------------------------------------------------------------------------

  // --- The room picker: the state and the log follow the room picked ------------------------

  const roomInput = $("#room-name");
  const roomOptions = $("#room-options");
  const ROOM_NAME = /^[A-Za-z0-9._:-]{1,200}$/;
  let room = "";

  async function suggestRooms() {
    if (!roomInput || !config.roomsApi) return;
    const prefix = roomInput.value.trim();
    const params = new URLSearchParams({ order: "recent" });
    if (prefix) params.set("prefix", prefix);
    try {
      const response = await fetch(config.roomsApi + "?" + params.toString(), { credentials: "same-origin" });
      if (!response.ok) return;
      const page = await response.json();
      roomOptions.replaceChildren(
        ...page.results.filter((r) => r.room !== null).slice(0, 50).map((r) =>
          el("option", { value: r.room, label: r.room + " · seq " + r.seq }))
      );
    } catch (error) {
      /* suggestions only */
    }
  }

  function roomPicked() {
    const value = roomInput.value.trim();
    const next = value === "" || ROOM_NAME.test(value) ? value : room;
    roomInput.setCustomValidity(next === value ? "" : "1-200 of A-Z a-z 0-9 . _ : -");
    if (next === room) return;
    room = next;
    refreshState();
    filtersChanged();
  }

  if (roomInput) {
    let typingRoom = null;
    roomInput.addEventListener("input", () => {
      clearTimeout(typingRoom);
      typingRoom = setTimeout(() => { suggestRooms(); roomPicked(); }, 250);
    });
    roomInput.addEventListener("change", roomPicked);
    roomInput.addEventListener("focus", suggestRooms);
    $("#room-picker").addEventListener("submit", (event) => {
      event.preventDefault();
      roomPicked();
    });
  }

  // Whether the server answered (false only when it cannot be reached).
  async function refreshState() {
    try {
      const html = await WR.fetchHtml(config.stateUrl + (room ? "?room=" + encodeURIComponent(room) : ""));
      const panel = $("#state-panel");
      const before = panel.querySelector("#state-meta");
      const fragment = WR.parseHtml(html);
      const meta = fragment.querySelector("#state-meta");
      if (before && meta && before.dataset.room === meta.dataset.room && before.dataset.seq === meta.dataset.seq && before.textContent === meta.textContent) return true;
      panel.replaceChildren(fragment);
      highlight(panel);
      // The seq is the room's: a named room is shown next to it.
      const shownRoom = meta && meta.dataset.room ? meta.dataset.room : "";
      $("#stat-seq").textContent = meta ? meta.dataset.seq + (shownRoom ? " (room " + shownRoom + ")" : "") : "";
      panel.classList.remove("flash");
      void panel.offsetWidth;
      panel.classList.add("flash");
      return true;
    } catch (error) {
      return !(error instanceof TypeError); // fetch's network error; an HTTP error is an answer
    }
  }

  // --- The request log --------------------------------------------------------------------------

  const logList = $("#log-list");
  const olderButton = $("#log-older");
  let loadedOlder = false;

  async function loadDetail(row, force) {
    const box = row.querySelector("[data-detail]");
    if (row.dataset.loaded && !force) return;
    row.dataset.loaded = "1";
    try {
      box.innerHTML = await WR.fetchHtml(row.dataset.detailUrl);
      WR.localTimes(box);
      highlight(box);
    } catch (error) {
      delete row.dataset.loaded;
      box.textContent = "Could not load this request: " + error.message;
    }
  }

  logList.addEventListener(
    "toggle",
    (event) => {
      const row = event.target;
      if (row.classList && row.classList.contains("log-row") && row.open) loadDetail(row, false);
    },
    true,
  );

  function merge(incoming, { append }) {
    const existing = new Map();
    logList.querySelectorAll(":scope > .log-row").forEach((row) => existing.set(row.dataset.id, row));
    let added = 0;
    const fresh = [];
    for (const row of incoming) {
      const old = existing.get(row.dataset.id);
      if (!old) {
        if (!append) row.classList.add("log-row-new");
        added += 1;
        fresh.push(row);
        continue;
      }
      if (old.dataset.version === row.dataset.version) {
        fresh.push(old);
        continue;
      }
      // Its outcome changed: take the new summary, keep it open and reload its details.
      if (old.open) {
        row.open = true;
        loadDetail(row, true);
      }
      fresh.push(row);
      old.replaceWith(row);
    }
    if (append) {
      for (const row of fresh) if (!row.isConnected) logList.appendChild(row);
    } else {
      // The first page, newest first; rows older than it (from "Load older") stay below it.
      const ids = new Set(fresh.map((row) => row.dataset.id));
      const oldest = fresh.length ? Number(fresh[fresh.length - 1].dataset.pk) : Infinity;
      const tail = [...logList.querySelectorAll(":scope > .log-row")].filter(
        (row) => !ids.has(row.dataset.id) && Number(row.dataset.pk) < oldest,
      );
      logList.replaceChildren(...fresh, ...tail);
    }
    WR.localTimes(logList);
    $("#log-empty").hidden = logList.children.length > 0;
    return added;
  }

  let logBusy = false;
  let logAgain = false;

  // --- Filters (outcome, path prefix) and the NDJSON export of what they select -------------

  const filterForm = $("#log-filters");
  const exportLink = $("#log-export");

  function filters() {
    const params = new URLSearchParams();
    if (!filterForm) return params;
    const outcome = filterForm.elements.status.value;
    const path = filterForm.elements.path.value.trim().replace(/^\/+/, "");
    if (outcome) params.set("status", outcome);
    if (path) params.set("path", path);
    if (room) params.set("room", room);
    return params;
  }

  function logUrl(extra) {
    const params = filters();
    for (const [name, value] of Object.entries(extra || {})) params.set(name, value);
    const query = params.toString();
    return config.logUrl + (query ? "?" + query : "");
  }

  function filtersChanged() {
    const params = filters();
    params.set("format", "ndjson");
    if (exportLink) exportLink.href = config.requestsApi + "?" + params.toString();
    // Another selection: start the list over rather than merge into the old one.
    logList.replaceChildren();
    loadedOlder = false;
    refreshLog();
  }

  if (filterForm) {
    filterForm.addEventListener("submit", (event) => {
      event.preventDefault();
      filtersChanged();
    });
    filterForm.elements.status.addEventListener("change", filtersChanged);
    let typing = null;
    filterForm.elements.path.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(filtersChanged, 300);
    });
  }

  async function refreshLog() {
    if (logBusy) {
      logAgain = true;
      return;
    }
    logBusy = true;
    try {
      const page = WR.parseHtml(await WR.fetchHtml(logUrl())).querySelector(".log-page");
      const added = merge([...page.querySelectorAll(".log-row")], { append: false });
      if (added) {
        const total = $("#stat-requests");
        total.textContent = String(Number(total.textContent || 0) + added);
      }
      if (!loadedOlder) olderButton.hidden = page.dataset.more !== "1";
    } catch (error) {
      /* polled again soon */
    } finally {
      logBusy = false;
      if (logAgain) {
        logAgain = false;
        setTimeout(refreshLog, 150);
      }
    }
  }

  olderButton.addEventListener("click", async () => {
    const rows = logList.querySelectorAll(":scope > .log-row");
    const oldest = rows.length ? rows[rows.length - 1].dataset.pk : "";
    olderButton.disabled = true;
    try {
      const url = logUrl({ before: oldest });
      const page = WR.parseHtml(await WR.fetchHtml(url)).querySelector(".log-page");
      loadedOlder = true;
      merge([...page.querySelectorAll(".log-row")], { append: true });
      olderButton.hidden = page.dataset.more !== "1";
    } finally {
      olderButton.disabled = false;
    }
  });

  // Many messages in a burst make one refresh.
  let logTimer = null;
  let stateTimer = null;
  function soonLog() {
    if (!logTimer) logTimer = setTimeout(() => { logTimer = null; refreshLog(); }, 150);
  }
  function soonState() {
    if (!stateTimer) stateTimer = setTimeout(() => { stateTimer = null; refreshState(); }, 150);
  }

  // --- The owner's live feed, with polling while it is down ------------------------------------

  const indicator = $("#live-indicator");
  let socket = null;
  let retryDelay = 1000;
  let pollTimer = null;

  function setLive(state, text) {
    indicator.dataset.state = state;
    indicator.querySelector(".live-text").textContent = text;
  }

  let retryTimer = null;

  // One poll: the state panel's answer also tells whether the server is reachable at all.
  async function poll() {
    refreshLog();
    const reached = await refreshState();
    if (!pollTimer) return; // the live feed came back meanwhile
    if (!reached) {
      setLive("offline", "Offline: the server cannot be reached");
    } else if (indicator.dataset.state !== "polling") {
      setLive("polling", "Polling");
      // Back: try the live feed now rather than after the retry's back-off.
      if (!socket) {
        clearTimeout(retryTimer);
        retryDelay = 1000;
        connect();
      }
    }
  }

  function startPolling() {
    if (pollTimer) return;
    setLive("polling", "Polling");
    pollTimer = setInterval(poll, 3000);
    poll();
  }

  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (socket) return;
    if (!("WebSocket" in window)) {
      startPolling();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + config.wsPath);
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message.type === "hello") {
        retryDelay = 1000;
        stopPolling();
        setLive("live", "Live");
        // Whatever happened while the feed was down.
        soonLog();
        soonState();
      } else if (message.type === "requests") {
        soonLog();
      } else if (message.type === "state") {
        // Only the room on show (or, after a publish's switch, every room) reads its state again.
        if (message.every_room || (message.room || "") === room) soonState();
        soonLog();
      } else if (message.type === "replay") {
        if (!tracking) refreshVersions();
      }
    });
    const opened = socket;
    socket.addEventListener("close", (event) => {
      if (socket !== opened) return;
      socket = null;
      startPolling();
      if (event.code === 4403 || event.code === 4404) {
        setLive("polling", "Polling (live feed refused)");
        return;
      }
      clearTimeout(retryTimer);
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    });
  }

  // Keeps proxies from closing an idle feed.
  setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}');
  }, 30000);

  connect();
  // Polling starts if the feed does not say hello soon.
  setTimeout(() => {
    if (indicator.dataset.state === "connecting") startPolling();
  }, 4000);

  // --- Send a test request ---------------------------------------------------------------------

  // "Name: value" lines; blank lines and lines without a colon are skipped.
  function parseHeaders(text) {
    const headers = {};
    for (const line of text.split("\n")) {
      const at = line.indexOf(":");
      if (at <= 0) continue;
      const name = line.slice(0, at).trim();
      if (name) headers[name] = line.slice(at + 1).trim();
    }
    return headers;
  }

  function headersText(headers) {
    return Object.entries(headers).map(([name, value]) => name + ": " + value).join("\n") + "\n";
  }

  // The starter's signature headers for this body, from the server (which has the secret).
  async function signHeaders(body) {
    const sign = $("#tr-sign");
    if (!sign || !sign.checked || !config.signUrl) return;
    const result = await WR.api("POST", config.signUrl, { starter: sign.dataset.starter, body });
    if (!result.ok) throw new Error("not signed: " + WR.apiMessage(result));
    const box = $("#tr-headers");
    box.value = headersText({ ...parseHeaders(box.value), ...result.data.headers });
  }

  async function sendTestRequest() {
    const method = $("#tr-method").value;
    const path = $("#tr-path").value.trim().replace(/^\/+/, "");
    const contentType = $("#tr-content-type").value;
    const body = $("#tr-body").value;
    const url = config.writeUrl + (path ? "/" + path : "");
    if (method !== "GET" && method !== "HEAD") await signHeaders(body);
    const options = {
      method,
      // The write URL needs no credentials: never send this site's cookies to the hook's log.
      credentials: "omit",
      referrerPolicy: "no-referrer",
      headers: parseHeaders(($("#tr-headers") || { value: "" }).value),
    };
    if (method !== "GET" && method !== "HEAD") {
      options.headers["Content-Type"] = contentType;
      options.body = body;
    }
    const response = await fetch(url, options);
    const text = await response.text();
    return { status: response.status, statusText: response.statusText, text };
  }

  function showResponse(result) {
    const out = $("#tr-response");
    let shown = result.text;
    try {
      shown = JSON.stringify(JSON.parse(result.text), null, 2);
    } catch (error) {
      /* not JSON */
    }
    out.textContent = "HTTP " + result.status + " " + (result.statusText || "") + "\n" + shown;
    out.hidden = false;
    out.dataset.ok = result.status < 400 ? "1" : "0";
  }

  // Delegated: the Send requests card is redrawn when the keys change.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "test-request") return;
    {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      const note = $("#tr-status");
      button.disabled = true;
      note.textContent = "Sending…";
      try {
        const result = await sendTestRequest();
        showResponse(result);
        note.textContent = "Answered " + result.status + ".";
      } catch (error) {
        note.textContent = "Not sent: " + error.message;
      } finally {
        button.disabled = false;
      }
    }
  });

  // A key created, paused, resumed or revoked in the Keys panel: the Send requests card and the
  // read URLs show the keys that work now (or say there is none), as a reload would.
  async function refreshKeyedParts() {
    let page;
    try {
      page = WR.parseHtml(await WR.fetchHtml(location.pathname));
    } catch (error) {
      return;
    }
    const fresh = JSON.parse(page.querySelector("#hook-config").textContent);
    config.writeUrl = fresh.writeUrl;
    for (const selector of ["#try", "#state .read-url"]) {
      const now = document.querySelector(selector);
      const next = page.querySelector(selector);
      if (now && next) now.replaceWith(next);
      else if (now) now.remove();
      else if (next && selector !== "#try") $("#state").appendChild(next);
    }
    document.querySelectorAll("[data-send-sample]").forEach((button) => (button.hidden = !config.writeUrl));
  }

  document.addEventListener("wr:panel-updated", (event) => {
    if (event.target.id === "keys-panel") refreshKeyedParts();
  });

  // --- Keyboard: Ctrl/Cmd-S saves the draft now, Ctrl/Cmd-Enter publishes it --------------------

  document.addEventListener(
    "keydown",
    (event) => {
      if (!(event.ctrlKey || event.metaKey) || event.altKey || event.shiftKey) return;
      if (event.key === "s" || event.key === "S") {
        event.preventDefault(); // not the browser's "Save page as"
        save();
      } else if (event.key === "Enter" && (view ? view.dom.contains(event.target) : event.target === fallback)) {
        event.preventDefault();
        event.stopPropagation(); // before CodeMirror's own Mod-Enter (insert a blank line)
        const publish = $("#publish-button");
        if (!publish.disabled) publish.click();
      }
    },
    true,
  );

  document.querySelectorAll("[data-send-sample]").forEach((button) => {
    button.addEventListener("click", async () => {
      const note = document.querySelector("[data-sample-result]");
      button.disabled = true;
      try {
        const result = await sendTestRequest();
        showResponse(result);
        note.textContent =
          "Sent: the write URL answered " + result.status + ". Watch the request log and the state below.";
      } catch (error) {
        note.textContent = "Not sent: " + error.message;
      } finally {
        button.disabled = false;
      }
    });
  });

  highlight(document);
})();
