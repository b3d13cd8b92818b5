// The docs page: Python and JSON examples highlighted with the vendored CodeMirror parsers, and
// a search that keeps only the sections whose text has every word typed ("/" focuses it).
(function () {
  "use strict";
  if (window.WRCodeMirror) {
    document.querySelectorAll("pre > code").forEach((code) => {
      const language = /language-(python|json)/.exec(code.className);
      if (language) window.WRCodeMirror.highlightInto(code, code.textContent.replace(/\n$/, ""), language[1]);
    });
  }

  const input = document.getElementById("docs-search");
  const status = document.getElementById("docs-search-status");
  const article = document.querySelector("article.docs");
  if (!input || !article) return;

  // A section: a heading (h2-h4) and the elements after it up to the next heading.
  const sections = [];
  article.querySelectorAll("h2, h3, h4").forEach((heading) => {
    const parts = [heading];
    for (let next = heading.nextElementSibling; next && !/^H[2-4]$/.test(next.tagName); next = next.nextElementSibling) {
      parts.push(next);
    }
    sections.push({ heading, parts, text: parts.map((part) => part.textContent).join(" ").toLowerCase() });
  });

  function search() {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const section of sections) {
      const match = words.every((word) => section.text.includes(word));
      if (match) shown += 1;
      for (const part of section.parts) part.hidden = words.length > 0 && !match;
    }
    status.textContent = words.length
      ? shown
        ? shown + " section" + (shown === 1 ? "" : "s") + " match."
        : "Nothing matches “" + input.value.trim() + "”."
      : "";
  }

  input.addEventListener("input", search);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      input.value = "";
      search();
    }
  });
  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (event.key === "/" && !typing) {
      event.preventDefault();
      input.focus();
    }
  });
})();
