// Reports page: generators side by side as PhononBench's table (generated, valid, unique, relaxed,
// stable, rates), and stability by generator version, crystal system and space group (GET
// /api/v1/reports/stability), over everything, one batch or one watched source; tables and bar
// charts, each with its CSV.
"use strict";

const REPORT_COLUMNS = [
  ["group", null], ["generated", "int"], ["submitted", "int"], ["unique", "int"], ["screened", "int"], ["relaxed", "int"], ["stable", "int"],
  ["stable_rate", "pct"], ["stable_rate_relaxed", "pct"], ["stable_phononbench_rate", "pct"],
  ["stable_phononbench_v3_rate", "pct"], ["second_opinions", "int"], ["stable_by_both", "int"],
];
const HEADERS = {
  group: "group", generated: "generated", submitted: "valid", unique: "unique", screened: "screened", relaxed: "relaxed", stable: "stable",
  stable_rate: "stable / all", stable_rate_relaxed: "stable / relaxed", stable_phononbench_rate: "PhononBench −1e-3 THz / all",
  stable_phononbench_v3_rate: "PhononBench v3 −0.1 THz / all", second_opinions: "second opinions", stable_by_both: "stable by both",
};

function pct(x) { return x === null || x === undefined ? "" : `${(100 * x).toFixed(1)} %`; }

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("report-form");
  // by name, not form.elements: a control named "elements" (the results filter) would shadow it
  const field = (fieldName) => form.querySelector(`[name="${fieldName}"]`);

  function query(group) {
    const params = new URLSearchParams({ group_by: group });
    for (const name of ["batch_id", "source_id"]) {
      const value = field(name).value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  async function loadGroup(section) {
    const group = section.dataset.group;
    let report;
    try {
      report = await apiJson(`/api/v1/reports/stability?${query(group)}`);
    } catch (e) {
      showError(`Report by ${group}: ${e.message}`);
      return;
    }
    const table = document.getElementById(`table-${group}`);
    const head = document.createElement("tr");
    for (const [name] of REPORT_COLUMNS) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name === "group" ? group.replace("_", " ") : HEADERS[name];
      head.appendChild(th);
    }
    table.tHead.replaceChildren(head);
    table.tBodies[0].replaceChildren(...[...report.rows, report.total].map((row, i, all) => {
      const tr = document.createElement("tr");
      if (i === all.length - 1) tr.className = "total";
      for (const [name, kind] of REPORT_COLUMNS) {
        const td = document.createElement(name === "group" ? "th" : "td");
        if (name === "group") td.scope = "row";
        td.textContent = kind === "pct" ? pct(row[name]) : String(row[name] ?? "–");
        tr.appendChild(td);
      }
      return tr;
    }));
    const chart = document.getElementById(`chart-${group}`);
    if (vendorMissing("plotly.min.js") || !window.Plotly) {
      chart.textContent = `Charts need the plotting library: ${window.PAGE.installHint}.`;
      return;
    }
    if (!report.rows.length) { chart.textContent = "Nothing screened yet."; return; }
    const labels = report.rows.map((r) => (group === "space_group" ? `SG ${r.group}` : r.group));
    const bar = (key, name, color) => ({
      x: labels, y: report.rows.map((r) => (r[key] === null ? 0 : 100 * r[key])), type: "bar", name,
      marker: { color }, hovertemplate: "%{x}: %{y:.1f} %<extra>" + name + "</extra>",
    });
    window.Plotly.newPlot(chart, [
      bar("stable_rate", "stable / all", "#1f4e8c"),
      bar("stable_phononbench_rate", "PhononBench −1e-3 THz", "#6a9fd8"),
      bar("stable_phononbench_v3_rate", "PhononBench v3 −0.1 THz", "#a9c8ec"),
    ], {
      barmode: "group", margin: { l: 50, r: 10, t: 10, b: 80 }, yaxis: { title: { text: "%" }, range: [0, 100] },
      xaxis: { type: "category" }, legend: { orientation: "h", y: 1.12 },
    }, { responsive: true, displaylogo: false });
  }

  function loadAll() {
    clearErrors();
    for (const section of document.querySelectorAll("section.report")) loadGroup(section);
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); loadAll(); });
  for (const button of document.querySelectorAll("button.csv")) {
    button.addEventListener("click", async () => {
      const group = button.dataset.group;
      try {
        await download(`/api/v1/reports/stability.csv?${query(group)}`, `stability-by-${group}.csv`);
      } catch (e) { showError(`CSV: ${e.message}`); }
    });
  }
  window.onKeyChanged = loadAll;
  loadAll();
});
