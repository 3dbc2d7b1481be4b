// Upload page: choose or drop files, send them with the batch settings to POST /api/v1/batches,
// then list each structure's fate (accepted, duplicate of an earlier candidate, rejected and why).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  // by name, not form.elements: a control named "elements" (the results filter) would shadow it
  const field = (fieldName) => form.querySelector(`[name="${fieldName}"]`);
  const input = document.getElementById("files");
  const zone = document.getElementById("drop-zone");
  const chosenList = document.getElementById("chosen");
  const state = document.getElementById("upload-state");
  let chosen = [];

  function showChosen() {
    chosenList.replaceChildren(...chosen.map((f) => {
      const li = document.createElement("li");
      li.textContent = `${f.name} (${(f.size / 1024).toFixed(1)} kB)`;
      return li;
    }));
  }

  input.addEventListener("change", () => { chosen = Array.from(input.files); showChosen(); });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("over"); });
  }
  zone.addEventListener("drop", (e) => {
    chosen = chosen.concat(Array.from(e.dataTransfer.files));
    showChosen();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    if (!chosen.length) { showError("Choose or drop at least one structure file."); return; }
    const data = new FormData();
    for (const f of chosen) data.append("files", f, f.name);
    for (const name of ["generator", "generator_version", "protocol", "potential", "prescreen",
                        "prescreen_margin_thz", "second_opinion"]) {
      const value = field(name).value.trim();
      if (value) data.append(name, value);
    }
    const button = document.getElementById("submit");
    button.disabled = true;
    state.textContent = `Uploading ${chosen.length} file(s)…`;
    try {
      const created = await apiJson("/api/v1/batches", { method: "POST", body: data });
      state.textContent = "";
      showOutcome(created, created.structures);
    } catch (e) {
      state.textContent = "";
      showError(`Upload refused: ${e.message}`);
      if (e.detail && e.detail.structures) showOutcome(null, e.detail.structures);
    } finally {
      button.disabled = false;
    }
  });

  function showOutcome(created, structures) {
    const section = document.getElementById("outcome");
    section.hidden = false;
    const link = document.getElementById("batch-link");
    if (created) {
      link.textContent = `batch ${created.id}`;
      link.href = `/batches/${created.id}`;
      document.getElementById("outcome-summary").textContent =
        `${created.accepted} accepted (${created.duplicates} of them duplicates of earlier candidates, not recomputed), ` +
        `${created.rejected} rejected. Follow the batch's progress on its page.`;
    } else {
      link.textContent = "nothing accepted";
      link.removeAttribute("href");
      document.getElementById("outcome-summary").textContent = "No structure could be used; the reasons are below.";
    }
    const body = document.querySelector("#outcome-table tbody");
    body.replaceChildren(...structures.map((s) => {
      const tr = document.createElement("tr");
      const cells = [s.source, s.name];
      let fate, details;
      if (!s.accepted) {
        fate = "rejected";
        details = `${s.code || ""}: ${s.reason || ""}`;
      } else if (s.duplicate_of) {
        fate = "duplicate";
        details = `of candidate ${s.duplicate_of}`;
      } else {
        fate = "accepted";
        details = `candidate ${s.candidate_id}`;
      }
      for (const text of [...cells, fate]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      if (s.accepted) {
        const a = document.createElement("a");
        a.href = `/candidates/${s.candidate_id || s.duplicate_of}`;
        a.textContent = details;
        td.appendChild(a);
      } else {
        td.textContent = details;
      }
      tr.appendChild(td);
      tr.className = `fate-${fate}`;
      return tr;
    }));
    section.scrollIntoView();
    link.focus();
  }
});
