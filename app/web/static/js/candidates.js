// Results page: the candidate table with the API's filters, sorting and paging; the state lives in
// the URL (shareable); the CSV is GET /api/v1/candidates.csv with the same parameters: the page shown.
// "Export" is GET /api/v1/candidates/export with the same filters: every matching candidate, no paging.
"use strict";

// column path -> the API's sort key (models/queries.py SORTS)
const SORT_KEYS = {
  "id": "id",
  "reduced_formula": "formula",
  "n_sites": "n_sites",
  "verdict.min_frequency_thz": "min_frequency_thz",
  "verdict.verdict": "verdict",
  "verdict.spacegroup_after": "space_group",
};

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("filters");
  // by name, not form.elements: a control named "elements" (the results filter) would shadow it
  const field = (fieldName) => form.querySelector(`[name="${fieldName}"]`);
  const columns = window.PAGE.columns;
  let lastTotal = 0;

  function fromUrl() {
    const params = new URLSearchParams(location.search);
    for (const el of form.querySelectorAll("[name]")) {
      if (el.name && params.has(el.name)) el.value = params.get(el.name);
    }
  }

  function query() {
    const params = new URLSearchParams();
    for (const el of form.querySelectorAll("[name]")) {
      if (el.name && el.value.trim() !== "") params.set(el.name, el.value.trim());
    }
    return params;
  }

  async function load() {
    clearErrors();
    const params = query();
    history.replaceState(null, "", `/candidates?${params}`);
    const summary = document.getElementById("summary");
    summary.textContent = "Loading…";
    let page;
    try {
      page = await apiJson(`/api/v1/candidates?${params}`);
    } catch (e) {
      summary.textContent = "";
      showError(`Results: ${e.message}`);
      return;
    }
    lastTotal = page.total;
    const sort = field("sort").value;
    renderCandidateTable(document.getElementById("table"), columns, page.items, {
      sortKeys: SORT_KEYS,
      sortedBy: sort.replace(/^-/, ""),
      descending: sort.startsWith("-"),
      onSort: (key) => {
        const current = field("sort").value;
        field("sort").value = current === key ? `-${key}` : key;
        field("page").value = "1";
        load();
      },
    });
    const pages = Math.max(1, Math.ceil(page.total / page.per_page));
    const first = page.total ? (page.page - 1) * page.per_page + 1 : 0;
    const last = Math.min(page.total, page.page * page.per_page);
    summary.textContent = `${page.total} candidate(s) match; showing ${first}–${last}.`;
    document.getElementById("page-of").textContent = `page ${page.page} of ${pages}`;
    document.getElementById("prev").disabled = page.page <= 1;
    document.getElementById("next").disabled = page.page >= pages;
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); field("page").value = "1"; load(); });
  form.addEventListener("reset", () => {
    setTimeout(() => { field("sort").value = "id"; field("page").value = "1"; load(); }, 0);
  });
  document.getElementById("prev").addEventListener("click", () => {
    field("page").value = String(Math.max(1, Number(field("page").value) - 1));
    load();
  });
  document.getElementById("next").addEventListener("click", () => {
    field("page").value = String(Number(field("page").value) + 1);
    load();
  });
  document.getElementById("csv").addEventListener("click", async () => {
    try {
      await download(`/api/v1/candidates.csv?${query()}`, `candidates-page${field("page").value}.csv`);
    } catch (e) {
      showError(`CSV: ${e.message}`);
    }
  });
  document.getElementById("export").addEventListener("click", async () => {
    const button = document.getElementById("export");
    const name = document.getElementById("export-format").value;
    const format = window.PAGE.exportFormats.find((f) => f.name === name);
    const params = query();
    params.delete("page");
    params.delete("per_page");
    params.set("format", name);
    button.disabled = true;
    button.textContent = "Exporting…";
    try {
      await download(`/api/v1/candidates/export?${params}`, format.filename);
    } catch (e) {
      showError(`Export: ${e.message}`);
    } finally {
      button.disabled = false;
      button.textContent = "Export";
    }
  });
  window.onKeyChanged = load;
  fromUrl();
  load();
});
