// The docs page: Python and JSON examples highlighted with the vendored CodeMirror parsers.
(function () {
  "use strict";
  if (!window.WRCodeMirror) return;
  document.querySelectorAll("pre > code").forEach((code) => {
    const language = /language-(python|json)/.exec(code.className);
    if (language) window.WRCodeMirror.highlightInto(code, code.textContent.replace(/\n$/, ""), language[1]);
  });
})();
