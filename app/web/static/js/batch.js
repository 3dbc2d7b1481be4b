// Batch page: progress without reloading (GET /api/v1/batches/{id} every 2 s: counts by state, a
// bar, time left at the measured pace), and the batch's verdicts as they arrive.
"use strict";

const POLL_MS = 2000;

document.addEventListener("DOMContentLoaded", () => {
  const id = window.PAGE.batchId;
  const columns = window.PAGE.columns;
  document.getElementById("results-link").href = `/candidates?batch_id=${id}`;
  let lastEnded = -1;
  let timer = null;

  async function poll() {
    let batch;
    try {
      batch = await apiJson(`/api/v1/batches/${id}`);
    } catch (e) {
      showError(`Batch ${id}: ${e.message}`);
      if (e.status === 404 || e.status === 401 || e.status === 403) return;  // polling will not help
      timer = setTimeout(poll, POLL_MS * 5);
      return;
    }
    render(batch);
    const c = batch.counts;
    const ended = c.done + c.failed;
    if (ended !== lastEnded) {
      lastEnded = ended;
      await loadTable();
    }
    if (batch.status !== "done") timer = setTimeout(poll, POLL_MS);
  }

  function render(batch) {
    const c = batch.counts;
    const total = c.queued + c.running + c.done + c.failed;
    const pct = Math.round(100 * batch.progress);
    const bar = document.getElementById("bar");
    bar.setAttribute("aria-valuenow", String(pct));
    document.getElementById("bar-fill").style.width = `${pct}%`;
    const settings = [`protocol ${batch.protocol}`, `potential ${batch.potential}`];
    if (batch.generator) settings.unshift(`generator ${batch.generator}${batch.generator_version ? " " + batch.generator_version : ""}`);
    if (batch.prescreen) settings.push(`prescreen ${batch.prescreen} (margin ${batch.prescreen_margin_thz} THz)`);
    if (batch.second_opinion) settings.push(`second opinion ${batch.second_opinion}`);
    document.getElementById("batch-settings").textContent = settings.join(" · ");
    let text = `${batch.status}: ${c.done + c.failed} of ${total} ended (${pct} %)`;
    if (batch.status === "running" && batch.eta_s !== null) {
      text += `; about ${formatSeconds(batch.eta_s)} left at ${formatSeconds(batch.seconds_per_structure)} per structure`;
    } else if (batch.status === "running") {
      text += "; time left: known once the first structure ends";
    }
    document.getElementById("progress-text").textContent = text;
    const entries = [
      ["queued", c.queued], ["running", c.running], ["done", c.done], ["failed", c.failed],
      ["stable", c.stable], ["unstable", c.unstable], ["relaxation failed", c.relax_failed],
      ["verdict failed", c.verdict_failed],
    ];
    if (batch.prescreen) entries.push(["settled by prescreen", c.settled_by_prescreen]);
    if (batch.second_opinion) entries.push(["agree", c.agree], ["disagree", c.disagree], ["stable by both", c.stable_by_both]);
    const dl = document.getElementById("counts");
    dl.replaceChildren();
    for (const [name, value] of entries) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      dd.dataset.count = name;
      const pair = document.createElement("div");  // a name and its value stay together in the grid
      pair.append(dt, dd);
      dl.append(pair);
    }
    const rejected = batch.rejected_structures || [];
    document.getElementById("rejected").textContent = rejected.length
      ? `Rejected at upload: ${rejected.map((r) => `${r.name} (${r.code}: ${r.message})`).join("; ")}` : "";
  }

  async function loadTable() {
    try {
      const page = await apiJson(`/api/v1/candidates?batch_id=${id}&per_page=500`);
      renderCandidateTable(document.getElementById("table"), columns, page.items);
    } catch (e) {
      showError(`Verdicts of batch ${id}: ${e.message}`);
    }
  }

  window.onKeyChanged = () => { clearTimeout(timer); clearErrors(); lastEnded = -1; poll(); };
  poll();
});
