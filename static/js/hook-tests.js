// A hook's page, continued: the Tests panel (edit, save, run against the draft, results with
// diffs), a log entry's actions (resend, add as a test case) and an old version's code with its
// diff to the live one. Talks to the management API only (docs/ui.md).
(function () {
  "use strict";

  const WR = window.WR;
  const config = JSON.parse(document.getElementById("hook-config").textContent);
  const api = config.api; // /api/hooks/<id>/
  const $ = (selector) => document.querySelector(selector);
  const el = WR.el;

  function short(value) {
    const text = JSON.stringify(value);
    return text === undefined ? "undefined" : text.length > 300 ? text.slice(0, 299) + "…" : text;
  }

  function diffOps(ops) {
    const list = el("ul", { class: "diff-ops mono" });
    for (const op of ops) {
      const sign = op.op === "add" ? "+" : op.op === "remove" ? "−" : "~";
      const text =
        op.op === "replace" ? ": " + short(op.old) + " → " + short(op.value)
          : op.op === "add" ? ": " + short(op.value) : ": " + short(op.old);
      list.appendChild(el("li", { class: "op op-" + op.op }, el("span", { class: "op-sign", text: sign }), " " + (op.path || "(the whole value)") + text));
    }
    return list;
  }

  function diffLines(diff, into) {
    into.textContent = "";
    for (const line of diff.split("\n")) {
      if (!line) continue;
      let kind = "ctx";
      if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
      else if (line.startsWith("@@")) kind = "hunk";
      else if (line.startsWith("+")) kind = "add";
      else if (line.startsWith("-")) kind = "del";
      into.appendChild(el("span", { class: "diff-" + kind, text: line + "\n" }));
    }
  }

  // --- The Tests panel ---------------------------------------------------------------------------

  const doc = $("#tests-doc");
  const required = $("#tests-required");
  const status = $("#tests-status");
  const output = $("#tests-output");

  function readCases() {
    const text = doc.value.trim();
    if (!text) return [];
    const cases = JSON.parse(text);
    if (!Array.isArray(cases)) throw new Error("the test cases are a JSON list: [{\"name\": …, \"requests\": […]}]");
    return cases;
  }

  function fieldErrors(result) {
    const error = result.data && result.data.error;
    const box = el("div", { class: "text-danger" }, el("p", { text: WR.apiMessage(result) }));
    if (error && error.fields) {
      const list = el("ul", { class: "small mono" });
      for (const [name, messages] of Object.entries(error.fields)) {
        list.appendChild(el("li", { text: (name || "(the document)") + ": " + [].concat(messages).join(" ") }));
      }
      box.appendChild(list);
    }
    return box;
  }

  async function save() {
    let cases;
    try {
      cases = readCases();
    } catch (error) {
      status.textContent = "Not saved: " + error.message;
      return false;
    }
    status.textContent = "Saving…";
    const result = await WR.api("PUT", api + "tests/", { cases, required: required.checked });
    if (!result.ok) {
      status.textContent = "Not saved.";
      output.replaceChildren(fieldErrors(result));
      return false;
    }
    status.textContent = "Saved " + result.data.cases.length + " case" + (result.data.cases.length === 1 ? "" : "s") + ".";
    return true;
  }

  function showResults(data) {
    output.replaceChildren();
    output.appendChild(
      el("p", { class: "tests-summary " + (data.failed ? "text-danger" : "text-ok"), text: data.passed + " passed, " + data.failed + " failed." }),
    );
    const list = el("ol", { class: "test-results" });
    for (const result of data.results) output.appendChild(list).appendChild(caseItem(result));
  }

  function caseItem(result) {
    const item = el("li", { class: "test-result", "data-passed": result.passed ? "1" : "0" },
      el("span", { class: "badge " + (result.passed ? "badge-applied" : "badge-failed"), text: result.passed ? "pass" : "fail" }),
      " ", el("strong", { text: result.name }));
    if (result.error) {
      item.appendChild(el("p", { class: "text-danger", text: result.error.type + ": " + result.error.message }));
      if (result.error.traceback) item.appendChild(el("pre", { class: "traceback mono", text: result.error.traceback }));
    }
    for (const failure of result.failures) {
      if (failure.what === "error") continue; // shown above
      const where = failure.step === null ? "after the last request" : "request " + (failure.step + 1);
      const entry = el("div", { class: "test-failure" },
        el("p", { class: "small", text: failure.what + ", " + where + ": expected " + short(failure.expected) + ", got " + short(failure.actual) }));
      if (Array.isArray(failure.diff) && failure.diff.length) entry.appendChild(diffOps(failure.diff));
      item.appendChild(entry);
    }
    return item;
  }

  async function run() {
    let cases;
    try {
      cases = readCases();
    } catch (error) {
      status.textContent = "Not run: " + error.message;
      return;
    }
    const button = $("#tests-run");
    button.disabled = true;
    status.textContent = "Running " + cases.length + " case" + (cases.length === 1 ? "" : "s") + " against the draft…";
    try {
      const result = await WR.api("POST", api + "tests/run/", { cases });
      if (!result.ok) {
        status.textContent = "Not run.";
        output.replaceChildren(fieldErrors(result));
        return;
      }
      status.textContent = "";
      showResults(result.data);
    } finally {
      button.disabled = false;
    }
  }

  if (doc) {
    $("#tests-run").addEventListener("click", run);
    $("#tests-save").addEventListener("click", save);
    required.addEventListener("change", save);
  }

  // --- A log entry's actions ----------------------------------------------------------------------

  // A fresh case from a logged request: its responder's status is what it should answer.
  function caseFrom(entry) {
    const step = {
      method: entry.method,
      path: entry.path,
      headers: Object.fromEntries(
        Object.entries(entry.headers).filter(([name]) => !/^(host|content-length|cookie|connection)$/i.test(name)),
      ),
      query: entry.query,
    };
    if (entry.body_encoding === "utf-8" && entry.body) {
      step.raw_body = entry.body;
      step.content_type = entry.content_type || "text/plain";
    }
    if (entry.response) step.expect = { status: entry.response.status };
    const label = entry.seq ? "#" + entry.seq : entry.id.slice(0, 8);
    return { name: entry.method + " /" + entry.path + " (" + label + ")", requests: [step] };
  }

  document.addEventListener("click", async (event) => {
    const resend = event.target.closest("[data-resend]");
    const addTest = event.target.closest("[data-add-test]");
    const button = resend || addTest;
    if (!button) return;
    const note = button.parentElement.querySelector("[data-action-status]");
    const id = button.dataset.resend || button.dataset.addTest;
    button.disabled = true;
    try {
      if (resend) {
        const result = await WR.api("POST", api + "requests/" + id + "/resend/");
        note.textContent = result.ok
          ? "Resent: answered " + result.data.response.status + ". It is at the top of the log."
          : "Not resent: " + WR.apiMessage(result);
        return;
      }
      const result = await WR.api("GET", api + "requests/" + id + "/");
      if (!result.ok) {
        note.textContent = WR.apiMessage(result);
        return;
      }
      let cases;
      try {
        cases = readCases();
      } catch (error) {
        note.textContent = "Fix the test cases first: " + error.message;
        return;
      }
      cases.push(caseFrom(result.data));
      doc.value = JSON.stringify(cases, null, 2);
      note.textContent = (await save()) ? "Added to the tests below." : "Added below, but not saved: see the Tests panel.";
      $("#tests").scrollIntoView({ block: "start" });
    } finally {
      button.disabled = false;
    }
  });

  // --- An old version's code and its diff to the live one -----------------------------------------

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-version-code]");
    if (!button) return;
    const number = button.dataset.versionCode;
    const panel = document.querySelector('[data-version-panel="' + number + '"]');
    const open = panel.hidden;
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (!open || panel.dataset.loaded) return;
    panel.textContent = "Loading…";
    const version = await WR.api("GET", api + "versions/" + number + "/");
    if (!version.ok) {
      panel.textContent = WR.apiMessage(version);
      return;
    }
    panel.dataset.loaded = "1";
    panel.replaceChildren(el("h4", { text: "Code of v" + number }), el("pre", { class: "mono scroll version-source", text: version.data.code || "(empty)" }));
    const liveBadge = document.querySelector(".version .badge-live");
    const live = liveBadge ? liveBadge.closest(".version").dataset.number : config.liveVersion;
    if (live && String(live) !== String(number)) {
      const diff = await WR.api("GET", api + "versions/diff/?from=" + live + "&to=" + number);
      const pre = el("pre", { class: "diff version-diff" });
      if (diff.ok && diff.data.diff) diffLines(diff.data.diff, pre);
      else pre.textContent = diff.ok ? "The same code as the live version." : WR.apiMessage(diff);
      panel.append(el("h4", { text: "From the live version (v" + live + ") to v" + number }), pre);
    }
  });
})();
