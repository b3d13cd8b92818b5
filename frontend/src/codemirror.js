// The one front-end bundle WebReducer builds: CodeMirror 6 with Python (and JSON for read-only
// highlighting), exposed as window.WRCodeMirror for the plain scripts in static/js/.
import { basicSetup } from "codemirror";
import { EditorView, keymap } from "@codemirror/view";
import { EditorState, Compartment } from "@codemirror/state";
import { indentWithTab } from "@codemirror/commands";
import { indentUnit } from "@codemirror/language";
import { python, pythonLanguage } from "@codemirror/lang-python";
import { jsonLanguage } from "@codemirror/lang-json";
import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { classHighlighter, highlightCode } from "@lezer/highlight";

function createEditor(parent, { doc = "", onChange = null, label = "Code" } = {}) {
  const readOnly = new Compartment();
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        basicSetup,
        keymap.of([indentWithTab]),
        indentUnit.of("    "),
        EditorState.tabSize.of(4),
        python(),
        lintGutter(),
        readOnly.of(EditorState.readOnly.of(false)),
        EditorView.contentAttributes.of({ "aria-label": label }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged && onChange) onChange(update.state.doc.toString());
        }),
      ],
    }),
  });
  view.wrReadOnly = readOnly;
  return view;
}

function setDoc(view, text) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
}

// errors: [{line, column, message}] with 1-based lines and columns (sandbox.CodeError).
function setErrors(view, errors) {
  const doc = view.state.doc;
  const diagnostics = errors.map(({ line, column, message }) => {
    const lineNo = Math.min(Math.max(line || 1, 1), doc.lines);
    const info = doc.line(lineNo);
    const from = Math.min(info.from + Math.max((column || 1) - 1, 0), info.to);
    const to = from < info.to ? info.to : from;
    return { from, to, severity: "error", message };
  });
  view.dispatch(setDiagnostics(view.state, diagnostics));
}

// Static highlighting for <pre><code> blocks (docs, the state view): token spans with tok-*
// classes, styled by static/css/app.css.
function highlightInto(element, text, language) {
  const parser = (language === "json" ? jsonLanguage : pythonLanguage).parser;
  const tree = parser.parse(text);
  element.textContent = "";
  highlightCode(
    text,
    tree,
    classHighlighter,
    (chunk, classes) => {
      if (classes) {
        const span = document.createElement("span");
        span.className = classes;
        span.textContent = chunk;
        element.appendChild(span);
      } else {
        element.appendChild(document.createTextNode(chunk));
      }
    },
    () => element.appendChild(document.createTextNode("\n")),
  );
}

window.WRCodeMirror = { createEditor, setDoc, setErrors, highlightInto, EditorState };
