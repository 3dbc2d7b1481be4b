// Candidate page: the verdict in words, the worst mode, the band structure with its DOS (plotly:
// the tolerance band shaded, imaginary branches in red), the structure in 3D (3Dmol), before and
// after relaxation, both PhononBench criteria, provenance and downloads.
"use strict";

const REASONS = {
  optical: "an optical phonon mode is imaginary: the structure can lower its energy by distorting",
  acoustic: "an acoustic branch is imaginary away from Γ (beyond the protocol's acoustic tolerance)",
  elastic: "the Born elastic criterion fails: the crystal is mechanically unstable",
};
const WHERE = {
  path: "on the high-symmetry band path",
  mesh: "on the q-point mesh (off the band path)",
  commensurate: "at a q-point commensurate with the supercell (force constants exact there)",
  gamma: "at Γ (the Γ-point check)",
};
const GREEK = { GAMMA: "Γ", SIGMA: "Σ", DELTA: "Δ", LAMBDA: "Λ", PI: "Π", XI: "Ξ", G: "Γ" };
const SUBSCRIPT = "₀₁₂₃₄₅₆₇₈₉";

// seekpath's "GAMMA", "SIGMA_0", "X1" and phonopy's mathtext "$\Gamma$" as Γ, Σ₀, X₁
function tickLabel(label) {
  const text = String(label).replace(/[$\\{}]/g, "").replace(/mathrm/g, "");
  const m = text.match(/^([A-Za-z]+?)_?(\d*)$/);
  if (!m) return text;
  const name = GREEK[m[1].toUpperCase()] || m[1];
  return name + [...m[2]].map((d) => SUBSCRIPT[Number(d)]).join("");
}

// workers/screening/report/plots.py get_special_points, in JavaScript (phonopy's label convention)
function specialPoints(bands) {
  const positions = [], texts = [];
  const nExpected = bands.path_connections.reduce((n, c) => n + 2 - (c ? 1 : 0), 0);
  const labels = bands.labels.length === nExpected ? bands.labels : null;
  let cursor = 0, startOfRun = true;
  bands.distances.forEach((seg, i) => {
    if (startOfRun) {
      const text = labels ? tickLabel(labels[cursor]) : "";
      cursor += 1;
      if (positions.length && Math.abs(positions[positions.length - 1] - seg[0]) < 1e-9) {
        texts[texts.length - 1] = `${texts[texts.length - 1]}|${text}`;
      } else {
        positions.push(seg[0]);
        texts.push(text);
      }
    }
    positions.push(seg[seg.length - 1]);
    texts.push(labels ? tickLabel(labels[cursor]) : "");
    cursor += 1;
    startOfRun = !(i < bands.path_connections.length && bands.path_connections[i]);
  });
  return [positions, texts];
}

function plotBands(el, bands, tol, title) {
  const nBands = bands.frequencies[0][0].length;
  const traces = [];
  let fMin = 0, fMax = 0;
  for (let b = 0; b < nBands; b++) {
    const x = [], y = [];
    let lowest = Infinity;
    bands.distances.forEach((seg, s) => {
      seg.forEach((d, q) => {
        const f = bands.frequencies[s][q][b];
        x.push(d); y.push(f);
        lowest = Math.min(lowest, f);
        fMin = Math.min(fMin, f); fMax = Math.max(fMax, f);
      });
      x.push(null); y.push(null);  // a break between segments
    });
    const imaginary = lowest < -tol;
    traces.push({
      x, y, type: "scatter", mode: "lines", xaxis: "x", yaxis: "y", showlegend: false,
      line: { color: imaginary ? "#c62828" : "#1f4e8c", width: imaginary ? 2.2 : 1.2 },
      name: imaginary ? `branch ${b} (imaginary)` : `branch ${b}`,
      hovertemplate: "%{y:.3f} THz<extra>branch " + b + (imaginary ? ", imaginary" : "") + "</extra>",
    });
  }
  traces.push({
    x: bands.dos_states_per_thz, y: bands.dos_frequencies_thz, type: "scatter", mode: "lines",
    xaxis: "x2", yaxis: "y", fill: "tozerox", line: { color: "#555", width: 1 }, showlegend: false, name: "DOS",
    hovertemplate: "%{y:.3f} THz: %{x:.3g} states/THz<extra>DOS</extra>",
  });
  const [positions, texts] = specialPoints(bands);
  const span = Math.max(fMax - Math.min(fMin, 0), 1e-3);
  const yRange = [Math.min(fMin, -0.05 * span) - 0.05 * span, fMax + 0.05 * span];
  const xEnd = positions.length ? positions[positions.length - 1] : 1;
  const layout = {
    title: { text: title, font: { size: 14 } },
    margin: { l: 60, r: 10, t: 40, b: 40 },
    xaxis: { domain: [0, 0.78], tickvals: positions, ticktext: texts, range: [0, xEnd], showgrid: true, zeroline: false },
    xaxis2: { domain: [0.81, 1], title: { text: "DOS" }, showticklabels: false, zeroline: false },
    yaxis: { title: { text: "Frequency (THz)" }, range: yRange, zeroline: true, zerolinecolor: "#999" },
    shapes: [
      // the tolerance band: frequencies in [-tol, 0) still count as real
      { type: "rect", xref: "paper", yref: "y", x0: 0, x1: 1, y0: -tol, y1: 0, fillcolor: "#fdd835", opacity: 0.35, line: { width: 0 } },
      // below it: imaginary
      { type: "rect", xref: "paper", yref: "y", x0: 0, x1: 1, y0: yRange[0], y1: -tol, fillcolor: "#f4c7c3", opacity: 0.35, line: { width: 0 }, layer: "below" },
    ],
    annotations: [{ xref: "paper", yref: "y", x: 0.01, y: -tol, yanchor: "top", xanchor: "left", showarrow: false,
                    text: `tolerance −${tol} THz`, font: { size: 10, color: "#6d4c00" } }],
  };
  window.Plotly.newPlot(el, traces, layout, { responsive: true, displaylogo: false });
}

function cifCell(cif) {
  const get = (tag) => {
    const m = cif.match(new RegExp(`^${tag}\\s+([-0-9.]+)`, "m"));
    return m ? Number(m[1]) : null;
  };
  return {
    a: get("_cell_length_a"), b: get("_cell_length_b"), c: get("_cell_length_c"),
    alpha: get("_cell_angle_alpha"), beta: get("_cell_angle_beta"), gamma: get("_cell_angle_gamma"),
    volume: get("_cell_volume"),
  };
}

function fmt(x, digits = 3) { return x === null || x === undefined ? "—" : Number(x).toFixed(digits); }

function addEntries(dl, entries) {
  dl.replaceChildren();
  for (const [name, value] of entries) {
    if (value === null || value === undefined || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    const pair = document.createElement("div");  // a name and its value stay together in the grid
    pair.append(dt, dd);
    dl.append(pair);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const id = window.PAGE.candidateId;
  let timer = null;
  let shown = false;

  async function load() {
    let c;
    try {
      c = await apiJson(`/api/v1/candidates/${id}`);
    } catch (e) {
      showError(`Candidate ${id}: ${e.message}`);
      return;
    }
    const v = c.verdict;
    renderVerdict(c);
    if (!v) {
      timer = setTimeout(load, 3000);  // not screened yet: refresh until it is
      if (!shown) { shown = true; showViewer(c.cif, "input structure (not relaxed yet)"); renderRelax(c, null, null); renderDownloads(c); }
      return;
    }
    const result = c.result || {};
    renderProvenance(c, result);
    renderDownloads(c);
    let relaxedCif = null;
    if (c.links.relaxed_cif) {
      try {
        relaxedCif = await (await api(c.links.relaxed_cif)).text();
      } catch (e) { showError(`Relaxed structure: ${e.message}`); }
    }
    renderRelax(c, result, relaxedCif);
    if (relaxedCif) {
      showViewer(relaxedCif, "relaxed structure");
    } else {
      showViewer(c.cif, "input structure (the relaxation did not converge)");
    }
    const note = document.getElementById("bands-note");
    if (c.links.band_structure_json) {
      if (vendorMissing("plotly.min.js") || !window.Plotly) {
        note.textContent = `The plotting library is not installed: ${window.PAGE.installHint}. The PNG is under Downloads.`;
      } else {
        try {
          const bands = await apiJson(c.links.band_structure_json);
          const settings = ((result.provenance || {}).protocol_settings) || {};
          const tol = settings.imaginary_tol_thz ?? 0.001;
          note.textContent = `Shaded yellow: the protocol's tolerance (frequencies down to −${tol} THz count as real); ` +
            "red branches dip below it. Drag to zoom, double-click to reset.";
          plotBands(document.getElementById("bands"), bands, tol, `${c.reduced_formula} — ${v.verdict}`);
        } catch (e) { showError(`Band structure: ${e.message}`); }
      }
    } else {
      note.textContent = "No band structure: phonons were not computed for this verdict.";
    }
  }

  function renderVerdict(c) {
    const v = c.verdict;
    const badge = document.getElementById("badge");
    const words = document.getElementById("reason-words");
    document.getElementById("identity").textContent =
      `${c.name} · ${c.reduced_formula} · ${c.n_sites} atoms · ${c.generator ? "generator " + c.generator + " · " : ""}` +
      `batch ${c.batch_id}`;
    if (c.duplicate_of) {
      const p = document.getElementById("duplicate");
      p.hidden = false;
      p.textContent = `A duplicate of candidate ${c.duplicate_of}: it shares that candidate's screening.`;
    }
    if (!v) {
      badge.textContent = c.status || "queued";
      badge.className = "badge pending";
      words.textContent = "Not screened yet; this page refreshes by itself.";
      return;
    }
    badge.textContent = v.verdict.replace("_", " ");
    badge.className = `badge verdict-${v.verdict}`;
    if (v.verdict === "stable") words.textContent = "no imaginary phonon mode beyond the tolerance anywhere in the Brillouin zone";
    else if (v.verdict === "unstable") words.textContent = REASONS[v.reason] || v.reason || "";
    else if (v.verdict === "relax_failed") words.textContent = `the relaxation did not converge: ${v.reason || "no reason given"}`;
    else words.textContent = `the screening failed: ${v.reason || "no reason given"}`;
    const worst = (c.result || {}).worst_mode || {};
    addEntries(document.getElementById("worst"), [
      ["worst mode", v.min_frequency_thz === null ? null : `${fmt(v.min_frequency_thz)} THz`],
      ["q-point", v.worst_mode && v.worst_mode.qpoint ? `(${v.worst_mode.qpoint.map((x) => fmt(x)).join(", ")})` : null],
      ["branch", v.worst_mode ? v.worst_mode.branch : null],
      ["kind", worst.acoustic === undefined ? null : (worst.acoustic ? "acoustic" : "optical")],
      ["found", WHERE[worst.where] || worst.where],
    ]);
    const entries = [
      ["PhononBench −1e-3 THz", v.stable_phononbench ? "stable" : "not stable"],
      ["PhononBench v3 −0.1 THz", v.stable_phononbench_v3 === null ? "unknown" : (v.stable_phononbench_v3 ? "stable" : "not stable")],
    ];
    if (v.settled_by_prescreen) entries.push(["settled by", "the prescreen alone"]);
    if (v.second_opinion) {
      entries.push(["second opinion", `${v.second_opinion.potential}: ${v.second_opinion.verdict}` +
        (v.second_opinion.min_frequency_thz === null ? "" : ` (${fmt(v.second_opinion.min_frequency_thz)} THz)`)]);
      entries.push(["agreement", v.agreement === null ? "—" : (v.agreement ? "agrees" : "disagrees: send to DFT")]);
    }
    addEntries(document.getElementById("criteria"), entries);
    const warning = document.getElementById("warning");
    if (v.potential_warning) { warning.hidden = false; warning.textContent = v.potential_warning; }
  }

  function renderRelax(c, result, relaxedCif) {
    const lat = (c.structure && c.structure.lattice) || {};
    const relax = (result && result.relax) || {};
    const after = relaxedCif ? cifCell(relaxedCif) : {};
    const rows = [
      ["space group", result && result.input_spacegroup ? result.input_spacegroup :
        (c.spacegroup_symbol ? `${c.spacegroup_symbol} (${c.spacegroup_number})` : "—"), relax.spacegroup_after || "—"],
      ["a, b, c (Å)", `${fmt(lat.a)}, ${fmt(lat.b)}, ${fmt(lat.c)}`, after.a ? `${fmt(after.a)}, ${fmt(after.b)}, ${fmt(after.c)}` : "—"],
      ["α, β, γ (°)", `${fmt(lat.alpha, 2)}, ${fmt(lat.beta, 2)}, ${fmt(lat.gamma, 2)}`,
        after.alpha ? `${fmt(after.alpha, 2)}, ${fmt(after.beta, 2)}, ${fmt(after.gamma, 2)}` : "—"],
      ["volume (Å³)", fmt(lat.volume, 2), after.volume ? fmt(after.volume, 2) : "—"],
      ["volume change", "", relax.volume_change_fraction === undefined ? "—" : `${(100 * relax.volume_change_fraction).toFixed(2)} %`],
      ["energy (eV/atom)", "—", relax.energy_per_atom_ev === undefined ? "—" : fmt(relax.energy_per_atom_ev, 4)],
      ["relaxation", "", relax.steps === undefined ? "—" :
        `${relax.converged ? "converged" : "not converged"} in ${relax.steps} steps, max force ${fmt(relax.max_force_ev_per_angstrom, 4)} eV/Å`],
    ];
    const body = document.querySelector("#relax-table tbody");
    body.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      cells.forEach((text, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        cell.textContent = text;
        tr.appendChild(cell);
      });
      return tr;
    }));
  }

  function renderProvenance(c, result) {
    const prov = result.provenance || {};
    const pot = prov.potential || {};
    const versions = Object.entries(prov.versions || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    const phonons = result.phonons || {};
    addEntries(document.getElementById("provenance"), [
      ["potential", `${pot.name} (${pot.version}${pot.requested && pot.requested !== pot.name ? `, asked for ${pot.requested}` : ""})`],
      ["checkpoint", pot.checkpoint],
      ["checkpoint sha256", pot.checkpoint_sha256],
      ["device, execution", `${pot.device}, ${pot.execution}`],
      ["protocol", `${prov.protocol} [${prov.settings_hash}]`],
      ["supercell", phonons.n_supercell_atoms ? `${phonons.n_supercell_atoms} atoms, ${phonons.n_displacements} displacements` : null],
      ["versions", versions],
      ["time", result.timings_s && result.timings_s.total ? `${result.timings_s.total.toFixed(1)} s` : null],
    ]);
  }

  function renderDownloads(c) {
    const names = {
      bundle_zip: ["everything (zip)", `candidate-${id}.zip`],
      input_cif: ["input structure (CIF)", `candidate-${id}-input.cif`],
      relaxed_cif: ["relaxed structure (CIF)", `candidate-${id}-relaxed.cif`],
      band_structure_json: ["band structure + DOS (JSON)", `candidate-${id}-bands.json`],
      band_structure_png: ["band structure + DOS (PNG)", `candidate-${id}-bands.png`],
      phonopy_params: ["force constants (phonopy_params.yaml.xz)", `candidate-${id}-phonopy_params.yaml.xz`],
    };
    const list = document.getElementById("downloads");
    list.replaceChildren();
    for (const [key, [label, filename]] of Object.entries(names)) {
      const path = c.links[key];
      if (!path) continue;
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.dataset.link = key;
      button.addEventListener("click", async () => {
        try { await download(path, filename); } catch (e) { showError(`${label}: ${e.message}`); }
      });
      li.appendChild(button);
      list.appendChild(li);
    }
  }

  function showViewer(cif, what) {
    const note = document.getElementById("viewer-note");
    if (vendorMissing("3Dmol-min.js") || !window.$3Dmol) {
      note.textContent = `The 3D viewer is not installed: ${window.PAGE.installHint}.`;
      return;
    }
    try {
      const el = document.getElementById("viewer");
      el.replaceChildren();
      const viewer = window.$3Dmol.createViewer(el, { backgroundColor: "white" });
      viewer.addModel(cif, "cif");
      viewer.setStyle({}, { sphere: { scale: 0.3 }, stick: { radius: 0.12 } });
      viewer.addUnitCell();
      viewer.zoomTo();
      viewer.render();
      note.textContent = `The ${what}, with its unit cell. Drag to rotate, scroll to zoom.`;
    } catch (e) {
      note.textContent = `The 3D viewer could not start in this browser (${e.message}); the CIF is under Downloads.`;
    }
  }

  window.onKeyChanged = () => { clearTimeout(timer); clearErrors(); load(); };
  load();
});
