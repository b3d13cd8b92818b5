// Behaviour shared by every page: copy buttons, local times, panel forms submitted in place.
// Plain browser JavaScript, no build step (docs/ui.md).
(function () {
  "use strict";

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // JSON to and from the management API (session auth: CSRF token in X-CSRFToken).
  async function api(method, url, body) {
    const options = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (error) {
        data = null;
      }
    }
    return { ok: response.ok, status: response.status, data };
  }

  function apiMessage(result) {
    const error = result.data && result.data.error;
    if (error && error.message) return error.message;
    if (result.status === 0) return "The server cannot be reached.";
    return "The request failed (" + result.status + ").";
  }

  async function fetchHtml(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    });
    if (!response.ok) throw new Error("GET " + url + " answered " + response.status);
    return response.text();
  }

  function parseHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }

  // --- Times: the server renders UTC; show the reader's local time ---------------------------
  const timeFormat = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "medium",
  });
  const relativeFormat =
    typeof Intl.RelativeTimeFormat === "function"
      ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" })
      : null;

  function relative(date) {
    const seconds = Math.round((date.getTime() - Date.now()) / 1000);
    const steps = [
      [60, "second"],
      [60, "minute"],
      [24, "hour"],
      [30, "day"],
      [12, "month"],
      [Infinity, "year"],
    ];
    let value = seconds;
    for (const [size, unit] of steps) {
      if (Math.abs(value) < size) return relativeFormat.format(value, unit);
      value = Math.round(value / size);
    }
    return dateTimeFormat.format(date);
  }

  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach((element) => {
      if (element.dataset.localDone) return;
      const date = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) return;
      element.title = dateTimeFormat.format(date);
      if (element.dataset.local === "time") {
        element.textContent = timeFormat.format(date);
      } else if (element.hasAttribute("data-relative") && relativeFormat) {
        element.textContent = relative(date);
      } else if (element.dataset.local === "datetime") {
        element.textContent = dateTimeFormat.format(date);
      }
      element.dataset.localDone = "1";
    });
  }

  // --- Copy buttons: data-copy="#id" copies that element's text ------------------------------
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const label = button.textContent;
    try {
      await copyText(source.textContent.trim());
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Copy failed";
    }
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  });

  // --- Panel forms: <form data-panel="#id"> posts in place and swaps that panel ---------------
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.panel) return;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    const panel = document.querySelector(form.dataset.panel);
    if (!panel || !window.fetch) return; // an ordinary post, answered with a redirect
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      });
      if (!response.ok) throw new Error("answered " + response.status);
      panel.innerHTML = await response.text();
      localTimes(panel);
      const focusable = panel.querySelector("[role=alert], [role=status]");
      if (focusable) {
        focusable.setAttribute("tabindex", "-1");
        focusable.focus();
      }
      panel.dispatchEvent(new CustomEvent("wr:panel-updated", { bubbles: true }));
    } catch (error) {
      buttons.forEach((b) => (b.disabled = false));
      window.alert("That did not work: " + error.message + ". Reload the page and try again.");
    }
  });

  document.addEventListener("DOMContentLoaded", () => localTimes(document));

  // An element with attributes (class, text, or any attribute) and children (nodes or text).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child == null) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  window.WR = { api, apiMessage, csrfToken, el, fetchHtml, parseHtml, localTimes };
})();
