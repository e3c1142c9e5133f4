// gradfit's lesson page. Every number printed here was computed by gradfit's training loop
// in Python and embedded as JSON (the element #lesson-data); this script only draws and looks up.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("lesson-data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const OPTIMIZERS = Object.keys(D.variants.raw.runs);
  const state = {
    optimizer: D.start.optimizer,
    standardize: D.start.standardize,
    rateIndex: D.start.rate_index,
    frame: 0,
    timer: null,
  };

  const variant = () => D.variants[state.standardize ? "standardized" : "raw"];
  const run = () => variant().runs[state.optimizer][state.rateIndex];

  function element(parent, name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const key in attributes) node.setAttribute(key, attributes[key]);
    if (text !== undefined) node.textContent = text;
    parent.appendChild(node);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // -- the bowl: contour ellipses of J* + 1/2 sum_i c_i (a_i . (x - center))^2, and the path --------
  const BOWL = { width: 640, height: 440, pad: 28 };

  function bowlMapping(plane) {
    const [x0, x1, y0, y1] = plane.box;
    const width = BOWL.width - 2 * BOWL.pad, height = BOWL.height - 2 * BOWL.pad;
    // One scale for both axes, so that a round bowl looks round and a long valley long; but a
    // valley too narrow to see is stretched across to 30% of the picture (and the note says so).
    const scale = Math.min(width / (x1 - x0), height / (y1 - y0));
    const sx = Math.max(scale, (0.3 * width) / (x1 - x0)), sy = Math.max(scale, (0.3 * height) / (y1 - y0));
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const limit = 1e5; // keep the coordinates of a diverging path drawable
    const clamp = (v) => Math.max(-limit, Math.min(limit, v));
    return {
      sx, sy, stretch: Math.max(sx, sy) / scale, stretched: sx > sy ? "horizontal" : "vertical",
      // plane coordinates -> screen, for SVG's transform="matrix(...)"
      matrix: [sx, 0, 0, -sy, BOWL.width / 2 - cx * sx, BOWL.height / 2 + cy * sy],
      x: (x) => clamp(BOWL.width / 2 + (x - cx) * sx),
      y: (y) => clamp(BOWL.height / 2 - (y - cy) * sy),
    };
  }

  function levelAt(plane, point) {
    let level = 0;
    plane.axes.forEach((axis, i) => {
      const t = axis[0] * (point[0] - plane.center[0]) + axis[1] * (point[1] - plane.center[1]);
      level += 0.5 * plane.curvatures[i] * t * t;
    });
    return level;
  }

  function drawBowl() {
    const svg = $("bowl");
    clear(svg);
    const plane = variant().plane;
    const map = bowlMapping(plane);
    const defs = element(svg, "defs", {});
    const clip = element(defs, "clipPath", { id: "inside" });
    element(clip, "rect", { x: 1, y: 1, width: BOWL.width - 2, height: BOWL.height - 2 });
    const group = element(svg, "g", { "clip-path": "url(#inside)" });
    const current = run();
    const start = current.path[0];
    const startLevel = levelAt(plane, start);
    const cx = map.x(plane.center[0]), cy = map.y(plane.center[1]);
    // Contour lines, drawn in the plane's own coordinates: each encloses costs 4 times closer to
    // the optimum than the one outside it.
    const contours = element(group, "g", { transform: `matrix(${map.matrix.join(" ")})` });
    const axis = plane.axes[0];
    const angle = (Math.atan2(axis[1], axis[0]) * 180) / Math.PI;
    for (let i = -2; i < 9; i++) {
      const level = startLevel * Math.pow(4, -i);
      if (!(level > 0)) continue;
      const radii = plane.curvatures.map((c) => (c > 0 ? Math.sqrt((2 * level) / c) : 1e12));
      element(contours, "ellipse", {
        cx: plane.center[0], cy: plane.center[1], rx: radii[0], ry: radii[1],
        transform: `rotate(${angle} ${plane.center[0]} ${plane.center[1]})`, "vector-effect": "non-scaling-stroke",
        fill: i === 0 ? "#eef3fb" : "none", stroke: i === 0 ? "#6c8ebf" : "#a9bddb", "stroke-width": 1,
      });
    }
    $("bowl-note").textContent = "Each contour line encloses costs 4 times closer to the optimum than the one outside it; the shaded one passes through the start." +
      (map.stretch > 1.01 ? ` The bowl is so narrow that the ${map.stretched} axis is stretched ${map.stretch < 10 ? map.stretch.toPrecision(2) : Math.round(map.stretch)}× to show it.` : " Both axes have the same scale.");
    element(group, "line", { x1: cx - 6, y1: cy, x2: cx + 6, y2: cy, stroke: "#2e7d46", "stroke-width": 2 });
    element(group, "line", { x1: cx, y1: cy - 6, x2: cx, y2: cy + 6, stroke: "#2e7d46", "stroke-width": 2 });
    element(group, "text", { x: cx - 8, y: cy + 18, fill: "#2e7d46", "text-anchor": "end" }, "optimum");
    // The path up to the current frame; a non-finite point ends it (the run left float64).
    const points = [];
    for (let k = 0; k <= state.frame; k++) {
      const p = current.path[k];
      if (p === null || p[0] === null || p[1] === null) break;
      points.push([map.x(p[0]), map.y(p[1])]);
    }
    const diverged = current.stop_reason === "diverged";
    const colour = diverged ? "#b3261e" : "#1d4ed8";
    element(group, "polyline", {
      points: points.map((p) => p.join(",")).join(" "), fill: "none", stroke: colour, "stroke-width": 1.6,
    });
    points.forEach((p, k) => {
      const last = k === points.length - 1;
      element(group, "circle", { cx: p[0], cy: p[1], r: last ? 5 : 2.2, fill: last ? colour : "#fff",
        stroke: colour, "stroke-width": 1.2 });
    });
    element(group, "text", { x: map.x(start[0]) + 8, y: map.y(start[1]) - 8 }, "start (all zero)");
    const outside = points.length && (points[points.length - 1][0] < 0 || points[points.length - 1][0] > BOWL.width ||
      points[points.length - 1][1] < 0 || points[points.length - 1][1] > BOWL.height);
    if (outside) {
      element(svg, "text", { x: 12, y: 20, fill: "#b3261e", "font-weight": "600" },
        "the iterate has left the picture: the path leaps out of the bowl");
    }
    element(svg, "text", { x: BOWL.width / 2, y: BOWL.height - 6, "text-anchor": "middle" }, plane.labels[0]);
    element(svg, "text", { x: 10, y: BOWL.height / 2, transform: `rotate(-90 10 ${BOWL.height / 2})`,
      "text-anchor": "middle", dy: "0.7em" }, plane.labels[1]);
    $("lesson").dataset.points = String(points.length);
  }

  // -- the cost per epoch, log scale -------------------------------------------------------------
  const CURVE = { width: 500, height: 250, left: 54, right: 14, top: 12, bottom: 32 };

  function drawCurve() {
    const svg = $("curve");
    clear(svg);
    const current = run();
    const costs = current.cost.map(Number);
    const finite = costs.filter((c) => isFinite(c) && c > 0);
    let low = Math.floor(Math.log10(Math.min(...finite)));
    let high = Math.ceil(Math.log10(Math.max(...finite)));
    if (high <= low) high = low + 1;
    const lastEpoch = Math.max(current.n_epochs, 1);
    const W = CURVE.width - CURVE.left - CURVE.right, H = CURVE.height - CURVE.top - CURVE.bottom;
    const x = (epoch) => CURVE.left + (epoch / lastEpoch) * W;
    const y = (cost) => CURVE.top + ((high - Math.log10(Math.max(cost, Math.pow(10, low)))) / (high - low)) * H;
    const step = Math.max(1, Math.ceil((high - low) / 6));
    for (let e = low; e <= high; e += step) {
      element(svg, "line", { x1: CURVE.left, x2: CURVE.left + W, y1: y(Math.pow(10, e)), y2: y(Math.pow(10, e)),
        stroke: "#eee" });
      element(svg, "text", { x: CURVE.left - 6, y: y(Math.pow(10, e)) + 4, "text-anchor": "end" }, `1e${e}`);
    }
    element(svg, "text", { x: CURVE.left, y: CURVE.height - 8 }, "epoch 0");
    element(svg, "text", { x: CURVE.left + W, y: CURVE.height - 8, "text-anchor": "end" }, `epoch ${current.n_epochs}`);
    const line = (upTo, colour, width) => {
      const pts = [];
      for (let k = 0; k <= upTo; k++) {
        if (!isFinite(costs[k])) break;
        pts.push(`${x(current.epochs[k])},${y(costs[k])}`);
      }
      element(svg, "polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": width });
    };
    line(costs.length - 1, "#c9d3e6", 1.5);
    line(state.frame, current.stop_reason === "diverged" ? "#b3261e" : "#1d4ed8", 2);
    const now = costs[state.frame];
    if (isFinite(now)) {
      element(svg, "circle", { cx: x(current.epochs[state.frame]), cy: y(now), r: 4, fill: "#1d4ed8" });
    } else {
      element(svg, "text", { x: CURVE.left + W, y: CURVE.top + 10, "text-anchor": "end", fill: "#b3261e" },
        "cost not finite: diverged");
    }
  }

  // -- numbers, explanation, controls ------------------------------------------------------------
  function drawNumbers() {
    const current = run();
    const frame = state.frame;
    $("lesson").dataset.epoch = String(current.epochs[frame]);
    $("epoch").textContent = current.epochs[frame];
    $("n-epochs").textContent = current.n_epochs;
    $("cost-now").textContent = current.cost[frame];
    $("stop").textContent = "· " + current.stopped +  // the fit record's words (gradfit.result.headline)
      (current.epochs.length < current.n_epochs + 1 ? ` · showing ${current.epochs.length} of ${current.n_epochs + 1} epochs` : "");
    const body = $("predictions").tBodies[0];
    clear(body);
    D.test_rows.forEach((row, i) => {
      const tr = document.createElement("tr");
      const cells = [row.join(", "), current.pred[frame][i]];
      if (D.test_targets) cells.push(D.test_targets[i]);
      cells.forEach((text) => {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    $("scrub").max = String(current.epochs.length - 1);
    $("scrub").value = String(frame);
    $("lesson").dataset.optimizer = state.optimizer;
    $("lesson").dataset.standardize = String(state.standardize);
    $("lesson").dataset.stopReason = current.stop_reason;
  }

  function paragraph(parent, text, className) {
    const p = document.createElement("p");
    p.textContent = text;
    if (className) p.className = className;
    parent.appendChild(p);
    return p;
  }

  function drawExplanation() {
    const v = variant(), current = run(), i = state.rateIndex;
    const box = $("explain");
    clear(box);
    const rate = v.rate_texts[i], multiple = v.multiple_texts[i], growth = v.growth_texts[i];
    const [oneOverL, twoOverL] = v.limit_texts;
    const past = v.rates[i] * v.L > 2;
    const collinear = v.n_zero > 0
      ? ` ${v.n_zero} of its ${v.n_params} eigenvalues are zero: the features are collinear (some combination of them is constant), so the cost is flat along those directions and very steep along the one where they all move together.`
      : "";
    const hessian = `The Hessian of the cost (${state.standardize ? "standardized" : "raw"} features) has the eigenvalues ${v.eigenvalues_text}.${collinear}`;
    if (current.stop_reason === "diverged") {
      box.className = "explain diverged";
      paragraph(box, `Diverged: η = ${rate} = ${multiple} × 1/L is ${past ? "past" : "below"} the stability limit 2/L = ${twoOverL}.`)
        .style.fontWeight = "600";
      if (state.optimizer === "gd" || past) {
        paragraph(box, `Why: near the optimum a gradient step multiplies the distance to it, along each eigenvector of the Hessian, by 1 − η·λ for that eigenvector's eigenvalue λ. Along the steepest one (λ = L = ${v.L_text}) that factor is 1 − η·L = ${growth}: its size is above 1 whenever η > 2/L, so each epoch the iterate lands farther out on the other side of the valley, and the zigzag leaps out of the bowl. ${hessian}`);
      }
      if (state.optimizer !== "gd") {
        paragraph(box, `${state.optimizer} adds up past steps, so its limit is not gradient descent's 2/L; this run still grew without bound.`);
      }
      paragraph(box, "gradfit stopped the run with:");
      paragraph(box, current.message, "library").id = "library-message";
    } else if (past) {
      box.className = "explain unstable";
      paragraph(box, `η = ${rate} = ${multiple} × 1/L is past gradient descent's stability limit 2/L = ${twoOverL} (L = ${v.L_text}), yet ${state.optimizer} did not diverge here: ${state.optimizer === "adam" ? "Adam divides each step by the root mean square of recent gradients, so its steps have size about η whatever the curvature" : "gradfit's momentum restarts and takes back a step that raised the cost"}. Plain gd at this rate leaps out: 1 − η·L = ${growth}. ${hessian}`);
    } else {
      box.className = "explain stable";
      paragraph(box, `Stable: η = ${rate} = ${multiple} × 1/L, below the stability limit 2/L = ${twoOverL} (L = ${v.L_text}, the largest eigenvalue of the Hessian; the slider marks 1/L = ${oneOverL}, what learning_rate="auto" picks for gd, momentum and nesterov, and 2/L). ${state.optimizer === "gd" ? "A" : "For plain gradient descent, a"} gradient step multiplies the distance to the optimum along the steepest eigenvector by 1 − η·L = ${growth}, and along the flattest (μ = ${v.mu_text}) by 1 − η·μ = ${v.slow_texts[i]}: that slowest direction sets the pace, and the ratio L/μ = ${v.condition_text} (the condition number) says how stretched the bowl is. ${hessian}`);
    }
  }

  function drawNotes() {
    const v = variant(), plane = v.plane;
    const notes = $("notes");
    clear(notes);
    const s = D.variants.standardized, r = D.variants.raw;
    paragraph(notes, plane.kind === "slice"
      ? `This model has ${v.n_params} parameters, so the picture is a slice: the plane through the optimum θ* spanned by the Hessian's two extreme eigenvectors, v_max (largest eigenvalue L) and v_min (smallest non-zero eigenvalue μ). The contours are the cost on that plane; the path is the iterates projected onto it.` +
        (v.n_zero > 0 ? ` The Hessian has ${v.n_zero} zero eigenvalues: every point θ* + (a null direction) is optimal, and the one drawn is the optimum nearest the start. Gradient descent and momentum from zero move only within the span of the Hessian's ${v.n_params - v.n_zero} non-zero eigenvectors` + (v.n_params - v.n_zero === 2 ? ", so their path lies in the plane exactly; Adam's per-coordinate steps leave it." : ".") : "")
      : `The two parameters are drawn as they are (${plane.labels.join(" and ")}).`);
    paragraph(notes, `Standardizing rounds the bowl: with standardized features L = ${s.L_text}, μ = ${s.mu_text}, condition number L/μ = ${s.condition_text}; with raw features L = ${r.L_text}, μ = ${r.mu_text}, L/μ = ${r.condition_text}. The learning rate is in the units training runs in, so 1/L and 2/L move when standardization changes.`);
    paragraph(notes, `Every number on this page comes from gradfit's own training loop: GDRegressor was fitted to ${D.data_name} for each learning rate on the slider (multiples of 1/L and the rates ${D.data_name === "the tutorial's data" ? "the tutorial uses" : "given"}), each optimizer, with and without standardization (at most ${D.epochs} epochs, tol ${D.tol === null ? "none: every epoch runs" : D.tol}); a callback recorded the parameters after every epoch. Costs are printed as gradfit's "Epoch: i Cost: c" lines print them, predictions as gradfit demo does.`);
  }

  function drawControls() {
    const v = variant();
    const slider = $("rate");
    const logs = v.rates.map(Math.log10);
    slider.min = String(logs[0]);
    slider.max = String(logs[logs.length - 1]);
    slider.value = String(logs[state.rateIndex]);
    $("rate-text").textContent = `${v.rate_texts[state.rateIndex]} (${v.multiple_texts[state.rateIndex]} × 1/L)`;
    const ticks = $("ticks");
    clear(ticks);
    [["1/L", 1 / v.L, v.limit_texts[0]], ["2/L", 2 / v.L, v.limit_texts[1]]].forEach(([name, value, text]) => {
      const span = document.createElement("span");
      span.style.left = `${(100 * (Math.log10(value) - logs[0])) / (logs[logs.length - 1] - logs[0])}%`;
      span.textContent = `${name} = ${text}`;
      span.className = name === "1/L" ? "left" : "right"; // the two marks are close: labels point apart
      ticks.appendChild(span);
    });
    $("standardize").checked = state.standardize;
    document.querySelectorAll("#optimizers input").forEach((input) => {
      input.checked = input.value === state.optimizer;
    });
    $("play").textContent = state.timer ? "❚❚ pause" : "▶ play";
    $("lesson").dataset.rate = v.rate_texts[state.rateIndex];
    $("lesson").dataset.rateIndex = String(state.rateIndex);
  }

  function draw() {
    drawControls();
    drawBowl();
    drawCurve();
    drawNumbers();
    drawExplanation();
  }

  // On a new run keep the epoch shown (or the nearest before it), so numbers can be compared.
  function keepEpoch(epoch) {
    const epochs = run().epochs;
    let frame = 0;
    while (frame + 1 < epochs.length && epochs[frame + 1] <= epoch) frame++;
    state.frame = frame;
  }

  function change(update) {
    const epoch = run().epochs[state.frame];
    update();
    keepEpoch(epoch);
    drawNotes();
    draw();
  }

  function nearestRate(rates, value) {
    let best = 0;
    rates.forEach((r, i) => {
      if (Math.abs(Math.log(r / value)) < Math.abs(Math.log(rates[best] / value))) best = i;
    });
    return best;
  }

  function stop() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
  }

  function play() {
    if (state.timer) {
      stop();
      draw();
      return;
    }
    if (state.frame >= run().epochs.length - 1) state.frame = 0;
    state.timer = setInterval(() => {
      if (state.frame >= run().epochs.length - 1) {
        stop();
      } else {
        state.frame++;
      }
      draw();
    }, 90);
    draw();
  }

  // -- wiring ------------------------------------------------------------------------------------
  OPTIMIZERS.forEach((name) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "optimizer";
    input.value = name;
    input.id = `optimizer-${name}`;
    input.addEventListener("change", () => change(() => { state.optimizer = name; }));
    label.appendChild(input);
    label.appendChild(document.createTextNode(` ${name}`));
    $("optimizers").appendChild(label);
  });
  $("standardize").addEventListener("change", (event) => change(() => {
    const before = variant(), rate = before.rates[state.rateIndex];
    state.standardize = event.target.checked;
    // The same learning rate where both grids have it (e.g. the tutorial's 0.1), else the same multiple of 1/L.
    const after = variant();
    const same = after.rates.findIndex((r) => Math.abs(r / rate - 1) < 1e-12);
    state.rateIndex = same >= 0 ? same : nearestRate(after.rates.map((r) => r * after.L), rate * before.L);
  }));
  $("rate").addEventListener("input", (event) => change(() => {
    state.rateIndex = nearestRate(variant().rates, Math.pow(10, Number(event.target.value)));
  }));
  $("rate").addEventListener("keydown", (event) => {
    const delta = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 }[event.key];
    if (!delta) return;
    event.preventDefault();
    change(() => {
      state.rateIndex = Math.max(0, Math.min(variant().rates.length - 1, state.rateIndex + delta));
    });
  });
  $("play").addEventListener("click", play);
  $("step").addEventListener("click", () => {
    stop();
    state.frame = Math.min(state.frame + 1, run().epochs.length - 1);
    draw();
  });
  $("back").addEventListener("click", () => {
    stop();
    state.frame = Math.max(state.frame - 1, 0);
    draw();
  });
  $("reset").addEventListener("click", () => {
    stop();
    state.frame = 0;
    draw();
  });
  $("scrub").addEventListener("input", (event) => {
    stop();
    state.frame = Number(event.target.value);
    draw();
  });

  const head = $("predictions").tHead;
  const tr = document.createElement("tr");
  [D.test_label, `predicted ${D.target_name}`].concat(D.test_targets ? [`actual ${D.target_name}`] : [])
    .forEach((text) => {
      const th = document.createElement("th");
      th.textContent = text;
      tr.appendChild(th);
    });
  head.appendChild(tr);
  $("predictions-title").textContent = `Predictions for the ${D.test_label}, as the epochs go`;
  $("subtitle").textContent = `${D.data_name} · ${D.feature_names.length} features (${D.feature_names.join(", ")}) · target ${D.target_name} · the cost ${D.cost_formula}`;
  state.frame = run().epochs.length - 1; // open on the finished run; ⏮ and ▶ replay it
  drawNotes();
  draw();
})();
