/*
 * The page of `memvisor report --html`: builds every section from the JSON in #mv-data with
 * uPlot (embedded before this script). Data is only ever set as text (textContent), never as
 * markup: task kinds and paths come from the run and may hold anything.
 *
 * When done it fills #mv-status (hidden) for tests and tools: data-charts (charts made),
 * data-drawn (charts whose own series colour is on their canvas), data-errors (script
 * errors, see window.onerror in the page head), data-render-ms.
 */
(function () {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(document.getElementById("mv-data").textContent);
  var root = document.getElementById("mv-root");
  var charts = []; /* {u, rgb}: checked for their own colour once drawn */
  var C = {
    even: "#1f77b4", odd: "#2ca02c", priv: "#9467bd", soft: "#ff7f0e", hard: "#d62728",
    recycle: "#7f7f7f", kill: "#d62728", oom: "#8c564b", exit: "#bbbbbb", ok: "#1f77b4",
    bad: "#d62728"
  };
  var KIND_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(parent, tag, cls, text) {
    var e = el(tag, cls, text);
    parent.appendChild(e);
    return e;
  }
  function bytes(v) {
    if (v === null || v === undefined || v < 0) return "?";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, x = Math.abs(v);
    while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
    return (v < 0 ? "-" : "") + (i ? x.toFixed(1) : x) + " " + u[i];
  }
  /* signed sizes; unknown (no measured task) is "?", never 0 B */
  function sbytes(v) {
    if (v === null || v === undefined) return "?";
    return v < 0 ? "-" + bytes(-v) : bytes(v);
  }
  function hex2rgb(h) {
    return [parseInt(h.substr(1, 2), 16), parseInt(h.substr(3, 2), 16), parseInt(h.substr(5, 2), 16)];
  }
  function section(title, note) {
    var s = add(root, "section", "mv-section");
    add(s, "h2", null, title);
    if (note) add(s, "p", "mv-note", note);
    return s;
  }
  function table(parent, head, rows) {
    var t = add(parent, "table", "mv-table"), tr = add(add(t, "thead"), "tr"), tb = add(t, "tbody");
    head.forEach(function (h) { add(tr, "th", null, h); });
    rows.forEach(function (r) {
      var row = add(tb, "tr");
      r.forEach(function (c) { add(row, "td", null, c); });
    });
    return t;
  }
  function width(parent) {
    return Math.max(320, Math.min(parent.clientWidth || 1100, 1400) - 8);
  }
  /* A uPlot chart; `colors` are its series colours, one of which must show on its canvas. */
  function chart(parent, opts, data, colors) {
    var box = add(parent, "div", "mv-chart");
    opts.width = opts.width || width(parent);
    var u = new uPlot(opts, data, box);
    var title = parent.querySelector("h3") || parent.querySelector("h2");
    charts.push({u: u, rgbs: [].concat(colors).map(hex2rgb), name: title ? title.textContent : "?"});
    return u;
  }

  /* ---- header ---------------------------------------------------------------------- */
  function header() {
    var run = D.run || {}, lim = run.limits || {}, st = D.status || [0, 0, 0], rt = run.tasks;
    /* as the text report: an ended run's own counts (the whole batch, also when its results
     * went to a stream with no copy); a running or dead one's, its result lines */
    var ended = run.ended && rt && typeof rt.ok === "number";
    if (ended) st = [rt.ok, rt.failed, rt.quarantined];
    var h = add(root, "header", "mv-header");
    add(h, "h1", null, "memvisor report" + (run.run ? " — run " + run.run : ""));
    var rows = [];
    if (D.dir) rows.push(["directory", D.dir]);
    if (run.command) rows.push(["command", run.command.join(" ")]);
    if (run.started) rows.push(["started", run.started]);
    if (D.dir) rows.push(["ended", run.ended || (D.died
      ? "never: memvisor died (killed or crashed) before it could say so; no run holds its directory's lock"
      : "(still running, or it ended without saying so)")]);
    if (run.exit !== undefined && run.exit !== null) rows.push(["exit", run.exit]);
    rows.push(["tasks", st[0] + " ok, " + st[1] + " failed, " + st[2] + " quarantined" +
      (D.requeues ? ", " + D.requeues + " requeued" : "") + (ended || !D.dir ? ""
        : D.died ? " in its results (it died before it counted them)" : " so far (its results)")]);
    if (run.workers) rows.push(["workers", run.workers + (run.cgroup ? "; " + run.cgroup : "; memory sampled from /proc")]);
    if (D.dir) rows.push(["limits", "soft " + (lim.memory_soft ? bytes(lim.memory_soft) : "off") +
      ", hard " + (lim.memory_hard ? bytes(lim.memory_hard) : "off") + ", max_tasks " +
      (lim.max_tasks || "off") + ", metric " + (lim.metric || "?") +
      (lim.enforce === false ? ", observe only" : "")]);
    var rec = Object.keys(D.recycles || {}).map(function (k) { return k + " " + D.recycles[k]; });
    var would = Object.keys(D.would || {}).map(function (k) { return k + " " + D.would[k]; });
    if (D.dir) rows.push(["recycles", (rec.length ? rec.join(", ") : "none") +
      (would.length ? "; would have recycled (observe only): " + would.join(", ") : "") +
      (D.ooms ? "; kernel OOM kills " + D.ooms : "")]);
    if (D.results) rows.push(["results", D.results + " (" + D.result_lines + " lines" +
      (D.later_results ? "; " + D.later_results + " of them ended after this run did: a later " +
        "run's (--resume), not counted here" : "") + ")"]);
    else if (D.results_missing) rows.push(["results", D.results_missing +
      " (not found: moved or removed since the run; what follows is from its events)"]);
    rows.push(["generated", D.generated]);
    var t = add(h, "table", "mv-facts");
    rows.forEach(function (r) {
      var tr = add(t, "tr");
      add(tr, "th", null, r[0]);
      add(tr, "td", null, r[1]);
    });
  }

  /* ---- memory over time ------------------------------------------------------------ */
  /* Draws the marks of a slot: a vertical line each, its reason above when there is room. */
  function marksHook(marks, base) {
    return function (u) {
      var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, lastLabel = -1e9;
      ctx.save();
      ctx.font = Math.round(10 * devicePixelRatio) + "px sans-serif";
      ctx.textBaseline = "top";
      marks.forEach(function (m) {
        var x = Math.round(u.valToPos(base + m[0] / 1000, "x", true));
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        ctx.strokeStyle = C[m[2]] || "#999";
        ctx.lineWidth = (m[2] === "kill" || m[2] === "oom" ? 2 : 1) * devicePixelRatio;
        ctx.setLineDash(m[2] === "exit" ? [2 * devicePixelRatio, 3 * devicePixelRatio] : []);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + h);
        ctx.stroke();
        if (m[2] !== "exit" && m[3] && x - lastLabel > 70 * devicePixelRatio) {
          ctx.fillStyle = ctx.strokeStyle;
          ctx.fillText(m[2] + ": " + m[3], x + 3, top + 2);
          lastLabel = x;
        }
      });
      ctx.restore();
    };
  }

  function tooltip(box, s, base, xs) {
    var tip = add(box, "div", "mv-tip");
    tip.hidden = true;
    return function (u) {
      var i = u.cursor.idx;
      if (i === null || i === undefined || u.cursor.left < 0) { tip.hidden = true; return; }
      var lines = [new Date(xs[i] * 1000).toISOString().replace("T", " ").replace("Z", " UTC"),
        "generation " + s.g[i], "usage " + bytes(s.u[i] * 1024),
        "private " + bytes(s.p[i] === null ? -1 : s.p[i] * 1024),
        "rss " + bytes(s.r[i] === null ? -1 : s.r[i] * 1024)];
      if (s.h[i] !== null) lines.push("live heap " + bytes(s.h[i] * 1024));
      lines.push(s.k[i] ? "task " + s.k[i] : "no task in hand");
      tip.textContent = lines.join("\n");
      tip.hidden = false;
      tip.style.left = Math.min(u.cursor.left + 90, u.bbox.width / devicePixelRatio - 60) + "px";
      tip.style.top = "40px";
    };
  }

  function slotChart(parent, s, base) {
    var n = s.t.length, xs = new Array(n), even = new Array(n), odd = new Array(n),
      privE = new Array(n), privO = new Array(n), soft = new Array(n), hard = new Array(n);
    for (var i = 0; i < n; i++) {
      var lim = s.gens[String(s.g[i])] || [-1, -1], mib = s.u[i] === null ? null : s.u[i] / 1024;
      xs[i] = base + s.t[i] / 1000;
      even[i] = s.g[i] % 2 === 0 ? mib : null;
      odd[i] = s.g[i] % 2 === 1 ? mib : null;
      privE[i] = s.g[i] % 2 === 0 && s.p[i] !== null ? s.p[i] / 1024 : null;
      privO[i] = s.g[i] % 2 === 1 && s.p[i] !== null ? s.p[i] / 1024 : null;
      soft[i] = lim[0] > 0 ? lim[0] / 1048576 : null;
      hard[i] = lim[1] > 0 ? lim[1] / 1048576 : null;
    }
    var gens = {}, recycles = 0, kills = 0;
    s.g.forEach(function (g) { gens[g] = 1; });
    s.marks.forEach(function (m) {
      recycles += m[2] === "recycle";
      kills += m[2] === "kill" || m[2] === "oom";
    });
    var card = add(parent, "div", "mv-card");
    add(card, "h3", null, "slot " + s.slot + " — " + Object.keys(gens).length + " generation" +
      (Object.keys(gens).length === 1 ? "" : "s") + ", " + recycles + " recycle" +
      (recycles === 1 ? "" : "s") + (kills ? ", " + kills + " killed" : "") + " (" + s.points +
      " points in the timeline, " + n + " drawn)");
    if (!n) { add(card, "p", "mv-note", "no memory reading for this slot"); return; }
    var opts = {
      height: 230,
      width: width(parent) / (D.timeline.slots.length > 1 ? 2 : 1) - 24,
      cursor: {drag: {x: true, y: false}},
      legend: {show: true, live: false},
      scales: {x: {time: true}},
      axes: [{}, {values: function (u, v) { return v.map(function (x) { return x + " MiB"; }); }, size: 70}],
      series: [{},
        {label: "usage (even gen)", stroke: C.even, width: 1.5, spanGaps: false},
        {label: "usage (odd gen)", stroke: C.odd, width: 1.5, spanGaps: false},
        {label: "private", stroke: C.priv, width: 1, dash: [4, 3], spanGaps: false},
        {label: "private", stroke: C.priv, width: 1, dash: [4, 3], spanGaps: false},
        {label: "soft", stroke: C.soft, width: 1, dash: [6, 4]},
        {label: "hard", stroke: C.hard, width: 1, dash: [6, 4]}],
      hooks: {draw: [marksHook(s.marks, base)], setCursor: [tooltip(card, s, base, xs)]}
    };
    chart(card, opts, [xs, even, odd, privE, privO, soft, hard], [C.even, C.odd]);
  }

  function memory() {
    var sec = section("Memory over time, per worker slot",
      "Each generation of a slot's worker is a segment (alternating colours); soft and hard " +
      "limits dashed; vertical lines mark recycles (grey), kills (red), kernel OOM kills " +
      "(brown) and exits (dotted), with their reason. Hover for the task in hand. Drag to zoom, " +
      "double-click to reset.");
    var tl = D.timeline;
    if (!tl) { add(sec, "p", "mv-missing", "No memory timeline: " + (D.timeline_note || "none")); return; }
    add(sec, "p", "mv-note", tl.points + " points and " + tl.marks + " marks in timeline.csv; " +
      "downsampled here to each generation's lowest and highest reading per time bucket.");
    if (!tl.slots.length) { add(sec, "p", "mv-missing", "The timeline has no rows yet."); return; }
    var grid = add(sec, "div", tl.slots.length > 1 ? "mv-grid" : "");
    var base = (tl.epoch_ms + tl.t0) / 1000;
    tl.slots.forEach(function (s) { slotChart(grid, s, base); });
  }

  /* ---- throughput ------------------------------------------------------------------ */
  function throughput() {
    var tp = D.throughput;
    var sec = section("Throughput", tp ? (tp.source === "results"
      ? "Tasks ended per second, from the result lines' `ended` times."
      : "Tasks ended per second, from the timeline (the task in hand changing; older, " +
        "downsampled periods count fewer).") : null);
    if (!tp) { add(sec, "p", "mv-missing", "No times: the results carry no `ended` field and there is no timeline."); return; }
    var n = tp.ok.length, xs = [], ok = [], bad = [], per = tp.bucket_ms / 1000;
    for (var i = 0; i < n; i++) {
      xs.push((tp.t0_ms + i * tp.bucket_ms) / 1000);
      ok.push(tp.ok[i] / per);
      bad.push(tp.bad.length ? tp.bad[i] / per : null);
    }
    var series = [{}, {label: "tasks/s" + (tp.bad.length ? " (ok)" : ""), stroke: C.ok, fill: "rgba(31,119,180,0.15)", width: 1.5}];
    var data = [xs, ok];
    if (tp.bad.length) { series.push({label: "tasks/s (failed or quarantined)", stroke: C.bad, width: 1.5}); data.push(bad); }
    chart(sec, {height: 220, scales: {x: {time: true}}, series: series,
      axes: [{}, {size: 60}], cursor: {drag: {x: true, y: false}}}, data, C.ok);
  }

  /* ---- distributions --------------------------------------------------------------- */
  function distributions() {
    var K = D.kinds || {kinds: []};
    var sec = section("Per kind: peak and retained memory",
      "Tasks per size bucket (powers of two) for the most prominent kinds, suspects first; " +
      "retained = memory after the task minus before it (0 or less: nothing kept).");
    if (!K.kinds.length) { add(sec, "p", "mv-missing", "No result lines with memory figures."); return; }
    var labels = ["≤ 0"];
    for (var e = K.lo; e <= K.hi; e++) labels.push((e === K.lo ? "< " + bytes(Math.pow(2, e + 1)) : bytes(Math.pow(2, e))));
    var xs = labels.map(function (_, i) { return i; });
    ["hist_peak", "hist_retained"].forEach(function (key) {
      var series = [{}], data = [xs], any = [];
      K.kinds.forEach(function (k, i) {
        var col = KIND_COLORS[i % KIND_COLORS.length], tot = 0;
        k[key].forEach(function (c) { tot += c; });
        if (!tot) return;
        any.push(col);
        series.push({label: k.name + (k.suspect ? " (suspect)" : ""), stroke: col, width: 1.5,
          fill: col + "22", paths: uPlot.paths.stepped({align: 1}), points: {show: false}});
        data.push(k[key]);
      });
      var box = add(sec, "div", "mv-card");
      add(box, "h3", null, key === "hist_peak" ? "mem_peak per task" : "retained per task");
      if (!any.length) { add(box, "p", "mv-note", "no measured task"); return; }
      chart(box, {height: 220, series: series, scales: {x: {time: false}},
        axes: [{values: function (u, v) { return v.map(function (i) { return labels[i] || ""; }); }},
          {size: 60, label: "tasks"}]}, data, any);
    });
    var rows = K.kinds.map(function (k) {
      var p = k.peak || {}, r = k.retained || {};
      return [k.name + (k.suspect ? " (suspect)" : ""), k.tasks, bytes(p.p50), bytes(p.p95), bytes(p.max),
        sbytes(r.p50), sbytes(r.p95), sbytes(r.max)];
    });
    table(sec, ["kind", "tasks", "peak p50", "peak p95", "peak max", "retained p50", "retained p95", "retained max"], rows);
    if (K.more > 0) add(sec, "p", "mv-note", K.more + " more kinds not shown.");
  }

  /* ---- kinds suspected and not confirmed, or cleared, and why ---------------------- */
  function notConfirmed() {
    var list = D.not_confirmed || [];
    if (!list.length) return;
    var sec = section("Suspected, not confirmed or cleared",
      "Suspects become leaks only when an experiment (the kind alone on a fresh worker) or " +
      "their own evidence confirms them; the limit advice uses confirmed suspects only.");
    table(sec, ["kind", "status", "why"], list.map(function (k) { return [k.kind, k.status, k.note || ""]; }));
  }

  /* ---- suspects -------------------------------------------------------------------- */
  function suspects() {
    var sec = section("Leak suspects, biggest retained per task first",
      "Evidence is per task kind; an allocator that reuses memory another kind freed can move " +
      "growth to a later task: the snapshot's heap view (Python: MEMVISOR_TRACEMALLOC=1) names " +
      "the line.");
    if (!D.dir) { add(sec, "p", "mv-note", "Unknown: suspects are events; a results file alone has none."); return; }
    if (!D.suspects.length) { add(sec, "p", "mv-ok", "No leak suspected."); return; }
    D.suspects.forEach(function (s) {
      var card = add(sec, "div", "mv-card mv-suspect");
      add(card, "h3", null, s.kind + " — " + sbytes(s.per_task) + " per task, confidence " +
        s.confidence.toFixed(2) + ", rule " + (s.rules.join(",") || "?") + ", " + s.events +
        " event" + (s.events === 1 ? "" : "s") + (s.fds_per_task > 0 ? ", " + s.fds_per_task.toFixed(2) + " fds/task" : ""));
      if (s.evidence) add(card, "p", null, "confirmed by " + s.evidence);
      var seen = s.workers ? "; seen on " + s.workers + " worker" + (s.workers === 1 ? "" : "s") : "";
      add(card, "p", null, s.retained_n ? "retained p50 " + sbytes(s.retained_p50) + " over " + s.retained_n +
        " task" + (s.retained_n === 1 ? "" : "s") + " of this kind" + seen
        : "no measured task of this kind in the results" + seen);
      var sn = s.snapshot;
      if (!sn) { add(card, "p", "mv-note", "no snapshot"); return; }
      add(card, "p", "mv-path", "snapshot " + sn.path);
      if (sn.error) { add(card, "p", "mv-missing", "unreadable: " + sn.error); return; }
      if (sn.tracemalloc && sn.tracemalloc.length)
        table(card, ["tracemalloc: where", "grew", "count diff"], sn.tracemalloc.map(function (t) {
          return [t.where, sbytes(t.size_diff || 0), t.count_diff]; }));
      if (sn.types && sn.types.length)
        table(card, ["type", "growth", "now"], sn.types.map(function (t) { return [t.type, "+" + t.diff, t.count]; }));
      if (sn.mappings && sn.mappings.length)
        table(card, ["mapping", "grew", "rss then", "rss now"], sn.mappings.map(function (m) {
          return [m.mapping, sbytes(m.growth), bytes(m.rss_then), bytes(m.rss_now)]; }));
      if (sn.allocator)
        add(card, "p", null, "heap: " + sn.allocator.name + " allocator, " + bytes(sn.allocator.in_use) +
          " in use, " + bytes(sn.allocator.free) + " free");
      else if (!sn.tracemalloc || !sn.tracemalloc.length)
        add(card, "p", "mv-note", "heap: no view from the worker (" + (sn.heap_status || "no heap_status") + ")");
    });
  }

  function advice() {
    var sec = section("Suggested limits", "The same reasoning as `memvisor report` prints.");
    add(sec, "pre", "mv-advice", D.advice || "");
  }

  /* ---- the check ------------------------------------------------------------------- */
  /* Whether a chart's canvas holds one of its series colours: it drew data, not only axes
   * (later series may cover earlier ones, so any of them counts). */
  function drawn(c) {
    var cv = c.u.ctx.canvas, img, n = 0;
    try { img = c.u.ctx.getImageData(0, 0, cv.width, cv.height).data; } catch (e) { return false; }
    for (var i = 0; i < img.length; i += 4) {
      if (img[i + 3] < 200) continue;
      for (var k = 0; k < c.rgbs.length; k++) {
        var q = c.rgbs[k];
        if (Math.abs(img[i] - q[0]) < 12 && Math.abs(img[i + 1] - q[1]) < 12 &&
            Math.abs(img[i + 2] - q[2]) < 12 && ++n > 20) return true;
      }
    }
    return false;
  }

  header();
  memory();
  throughput();
  distributions();
  suspects();
  notConfirmed();
  advice();
  /* uPlot draws in a microtask after it is made: check once that has run */
  setTimeout(function () {
    var st = add(document.body, "div", null), ok = 0, undrawn = [];
    st.id = "mv-status";
    st.hidden = true;
    charts.forEach(function (c, i) {
      if (drawn(c)) ok++;
      else undrawn.push(i + ": " + c.name);
    });
    st.setAttribute("data-undrawn", undrawn.join(" | "));
    st.setAttribute("data-charts", charts.length);
    st.setAttribute("data-drawn", ok);
    st.setAttribute("data-errors", (window.mvErrors || []).length);
    st.setAttribute("data-render-ms", Math.round(performance.now() - t0));
    st.setAttribute("data-slots", D.timeline ? D.timeline.slots.length : 0);
  }, 0);
})();
