"use strict";
// The dashboard: a static page over the HTTP API (docs/http-api.md), holding no state of its own.
// Routes (in the fragment): #/ jobs, #/job/<id>, #/worlds, #/world/<id>, #/machine.
(function () {
  const main = document.getElementById("main");
  let cleanup = [];
  const FINAL = ["succeeded", "failed", "cancelled", "interrupted"];
  // timings the page measures of itself (ms since the page started loading), read by the benchmarks
  window.spatiaStats = {previewLatencyMs: [], previewShownMs: [], firstPictureMs: null, pointsLoaded: 0,
    jobsRenderedMs: null};

  function h(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const key in attrs || {}) {
      if (key === "text") node.textContent = attrs[key];
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), attrs[key]);
      else node.setAttribute(key, attrs[key]);
    }
    (children || []).forEach(function (c) { if (c != null) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  async function api(path, options) {
    const response = await fetch(path, Object.assign({credentials: "same-origin"}, options || {}));
    if (response.status === 401) { showSignIn(); throw new Error("not signed in"); }
    const type = response.headers.get("content-type") || "";
    const body = type.indexOf("json") >= 0 ? await response.json() : null;
    if (!response.ok) throw new Error((body && body.error && body.error.message) || ("HTTP " + response.status));
    return body;
  }
  function showSignIn() {
    main.replaceChildren(h("h1", {text: "Sign in needed"}),
      h("p", {}, ["This service needs its token. Open the sign-in link that ", h("code", {text: "spatia serve"}),
        " prints, or Blender's Open Dashboard button, or ", h("a", {href: "/login", text: "paste the token"}), "."]));
  }
  function when(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
  function duration(s) {
    if (s == null) return "";
    s = Math.round(s);
    return s >= 3600 ? Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min" : s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
  }
  function bar(fraction) { return h("span", {class: "bar"}, [h("span", {style: "width:" + Math.round(100 * fraction) + "%"})]); }
  function state(s) { return h("span", {class: "state " + s, text: s}); }
  function flash(message) { const p = h("p", {class: "error", text: message}); main.prepend(p); setTimeout(function () { p.remove(); }, 6000); }

  async function jobAction(id, action) {
    try {
      if (action === "rerun") {
        const shot = await api("/v1/jobs/" + id + "/shot");
        const job = await api("/v1/jobs", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(shot)});
        location.hash = "#/job/" + job.id;
      } else {
        await api("/v1/jobs/" + id + "/" + action, {method: "POST"});
      }
    } catch (err) { flash(action + ": " + err.message); }
  }
  function actions(row) {
    const out = h("span");
    if (row.origin && row.origin !== "service") return out;  // a run outside the service: shown, not steered
    if (row.status === "queued" || row.status === "running") out.appendChild(h("button", {text: "Cancel", "data-action": "cancel", onclick: function () { jobAction(row.id, "cancel"); }}));
    if (row.status === "failed" || row.status === "interrupted") out.appendChild(h("button", {text: "Resume", "data-action": "resume", onclick: function () { jobAction(row.id, "resume"); }}));
    if (FINAL.indexOf(row.status) >= 0) out.appendChild(h("button", {text: "Re-run", "data-action": "rerun", onclick: function () { jobAction(row.id, "rerun"); }}));
    return out;
  }

  // --- jobs home ---------------------------------------------------------------------------
  function jobsPage() {
    const rows = new Map();
    const stateFilter = h("select", {id: "filter-state"}, ["", "queued", "running", "succeeded", "failed", "cancelled", "interrupted"].map(function (s) { return h("option", {value: s, text: s || "every state"}); }));
    const worldFilter = h("select", {id: "filter-world"}, [h("option", {value: "", text: "every world"})]);
    const count = h("span", {class: "muted"});
    const body = h("tbody", {id: "jobs"});
    main.replaceChildren(h("h1", {text: "Jobs"}), h("div", {class: "filters"}, [stateFilter, worldFilter, count]),
      h("table", {}, [h("thead", {}, [h("tr", {}, ["state", "shot", "from", "world", "progress", "stage", "ETA", "created", "started", "finished", ""].map(function (t) { return h("th", {text: t}); }))]), body]));
    function render() {
      const s = stateFilter.value, w = worldFilter.value;
      const worlds = new Set();
      const fragment = document.createDocumentFragment();
      const list = Array.from(rows.values()).reverse();
      let shown = 0;
      list.forEach(function (row) {
        worlds.add(row.world_id);
        if ((s && row.status !== s) || (w && row.world_id !== w)) return;
        shown++;
        const own = !row.origin || row.origin === "service";
        fragment.appendChild(h("tr", {"data-job": row.id, "data-status": row.status, "data-origin": row.origin || "service"}, [
          h("td", {}, [state(row.status)]),
          h("td", {}, [own ? h("a", {href: "#/job/" + row.id, text: row.shot || row.id}) : h("span", {text: row.shot || row.id, title: row.path || ""})]),
          h("td", {class: "muted", text: own ? "service" : row.origin + (row.host ? " @ " + row.host : "")}),
          h("td", {}, [own ? h("a", {href: "#/world/" + row.world_id, text: row.world_id}) : h("span", {text: row.world_id, title: row.path || ""})]),
          h("td", {class: "progress"}, [bar(row.fraction), " " + Math.round(100 * row.fraction) + "%"]), h("td", {text: row.stage}),
          h("td", {text: duration(row.eta_s)}), h("td", {text: when(row.created)}), h("td", {text: when(row.started)}),
          h("td", {text: when(row.finished)}), h("td", {}, [actions(row)])]));
      });
      body.replaceChildren(fragment);
      count.textContent = shown + " of " + rows.size + " jobs";
      if (window.spatiaStats.jobsRenderedMs === null && rows.size) window.spatiaStats.jobsRenderedMs = performance.now();
      const have = new Set(Array.from(worldFilter.options).map(function (o) { return o.value; }));
      worlds.forEach(function (id) { if (!have.has(id)) worldFilter.appendChild(h("option", {value: id, text: id})); });
    }
    stateFilter.addEventListener("change", render);
    worldFilter.addEventListener("change", render);
    let pending = false;
    const source = new EventSource("/v1/dashboard/jobs/events");
    source.addEventListener("rows", function (e) {
      JSON.parse(e.data).forEach(function (row) { rows.set(row.id, row); });
      if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; render(); }); }
    });
    source.onerror = function () { if (source.readyState === 2) api("/v1/session").catch(function () {}); };
    cleanup.push(function () { source.close(); });
  }

  // --- one job, live -------------------------------------------------------------------------
  function jobPage(id) {
    const head = h("div"), progress = h("div"), preview = h("div", {id: "preview"}), previewNote = h("p", {class: "muted"});
    const frames = h("div", {class: "thumbs", id: "frames"}), refs = h("div", {class: "thumbs", id: "references"});
    const timings = h("div", {class: "charts"}), log = h("pre", {class: "log", id: "log"}), output = h("div", {id: "output"});
    main.replaceChildren(h("h1", {text: "Job " + id}), head, progress,
      h("div", {class: "cols"}, [h("div", {}, [h("h2", {text: "Denoising preview"}), preview, previewNote]),
        h("div", {}, [h("h2", {text: "Output"}), output, h("h2", {text: "Latest frames"}), frames])]),
      h("h2", {text: "Retrieved reference frames"}), refs, h("h2", {text: "Stage seconds per round"}), timings,
      h("h2", {text: "Log"}), log);
    let world = null, shownFrames = -1, roundsShown = -1;
    const img = h("img", {alt: "denoising preview"});
    img.addEventListener("load", function () {  // from computed on the server to shown here
      if (img.dataset.computed) window.spatiaStats.previewShownMs.push(Date.now() - Number(img.dataset.computed));
    });
    async function refreshWorld(job) {
      const record = await api("/v1/worlds/" + job.world_id);
      if (record.frames !== shownFrames) {
        shownFrames = record.frames;
        const first = Math.max(0, record.frames - 8);
        frames.replaceChildren.apply(frames, Array.from({length: record.frames - first}, function (_, i) {
          return h("img", {src: "/v1/worlds/" + job.world_id + "/frames/" + (first + i) + "?thumb=true", alt: "frame " + (first + i)});
        }));
      }
      if (record.rounds.length !== roundsShown) {
        roundsShown = record.rounds.length;
        const rounds = await api("/v1/worlds/" + job.world_id + "/rounds");
        const mine = rounds.slice(job.result ? rounds.length - job.result.rounds.length : Math.max(0, rounds.length - 4));
        timings.replaceChildren(SpatiaCharts.stacked("stage seconds (rounds " + (mine.length ? mine[0].round : "") + "…)",
          mine.map(function (r) { const t = {}; for (const k in r.timings) if (k !== "total_s") t[k.replace(/_s$/, "")] = r.timings[k]; return t; })));
        const last = rounds[rounds.length - 1];
        refs.replaceChildren.apply(refs, last && last.references ? last.references.map(function (i, j) {
          const score = last.reference_scores ? " (" + Number(last.reference_scores[j]).toFixed(2) + ")" : "";
          return h("img", {src: "/v1/worlds/" + job.world_id + "/frames/" + i + "?thumb=true", title: "frame " + i + score, alt: "reference " + i});
        }) : [h("span", {class: "muted", text: "none yet"})]);
      }
    }
    function showJob(job) {
      head.replaceChildren(h("table", {class: "kv"}, [
        h("tr", {}, [h("td", {text: "state"}), h("td", {id: "job-status", "data-status": job.status}, [state(job.status)])]),
        h("tr", {}, [h("td", {text: "world"}), h("td", {}, [h("a", {href: "#/world/" + job.world_id, text: job.world_id})])]),
        h("tr", {}, [h("td", {text: "created / started / finished"}), h("td", {text: [when(job.created), when(job.started), when(job.finished)].join(" / ")})]),
        h("tr", {}, [h("td", {text: "ETA"}), h("td", {text: duration(job.eta_s)})]),
        h("tr", {}, [h("td", {}), h("td", {}, [actions(job)])])]));
      progress.replaceChildren(bar(job.fraction), h("span", {id: "job-fraction", "data-fraction": job.fraction, text: " " + (100 * job.fraction).toFixed(1) + "% " + job.stage}));
      log.textContent = job.messages.join("\n") + (job.error ? "\n" + job.error.type + ": " + job.error.message : "");
      if (job.status === "succeeded" && !output.firstChild) {
        output.appendChild(h("video", {src: "/v1/jobs/" + id + "/files/video.mp4", controls: "", loop: "", muted: "", preload: "metadata"}));
      } else if (!output.firstChild) {
        output.appendChild(h("p", {class: "muted", text: "the clip appears here when the job succeeds"}));
      }
      refreshWorld(job).catch(function () {});
      if (FINAL.indexOf(job.status) >= 0) api("/v1/jobs/" + id + "/log").then(function (r) { if (r.lines.length) log.textContent += "\n\n" + r.lines.join("\n"); }).catch(function () {});
    }
    const source = new EventSource("/v1/jobs/" + id + "/live");
    source.addEventListener("job", function (e) { world = JSON.parse(e.data); showJob(world); });
    source.addEventListener("preview", function (e) {
      const info = JSON.parse(e.data);
      window.spatiaStats.previewLatencyMs.push(Date.now() - info.computed * 1000);
      img.dataset.computed = info.computed * 1000;
      img.src = "/v1/jobs/" + id + "/preview?seq=" + info.seq;
      img.dataset.step = info.step;
      if (!img.parentNode) preview.appendChild(img);
      previewNote.textContent = "step " + info.step + " of " + info.steps + " · " + info.frames + " latent frames";
    });
    source.onerror = function () { if (world && FINAL.indexOf(world.status) >= 0) source.close(); };
    cleanup.push(function () { source.close(); });
  }

  // --- worlds --------------------------------------------------------------------------------
  async function worldsPage() {
    main.replaceChildren(h("h1", {text: "Worlds"}), h("p", {class: "muted", text: "loading…"}));
    const worlds = await api("/v1/worlds");
    main.replaceChildren(h("h1", {text: "Worlds"}), h("div", {class: "grid"}, worlds.map(function (w) {
      const thumb = w.frames ? h("img", {src: "/v1/worlds/" + w.id + "/frames/" + (w.frames - 1) + "?thumb=true", alt: w.name}) : h("div", {class: "muted", text: "no frames yet"});
      return h("a", {href: "#/world/" + w.id, class: "card", style: "text-decoration:none;color:inherit"}, [thumb,
        h("div", {text: w.name}), h("div", {class: "muted", text: w.frames + " frames · " + w.rounds.length + " rounds · memory v" + (w.memory_version || "–")})]);
    })));
  }

  async function worldPage(id) {
    const viewStatus = h("p", {class: "muted", id: "view-status", text: "loading points…"});
    const canvas = h("canvas", {class: "view", id: "view"});
    const versions = h("tbody"), charts = h("div", {class: "charts"}), frames = h("div", {class: "thumbs"});
    main.replaceChildren(h("h1", {text: "World " + id}), canvas, viewStatus,
      h("p", {class: "legend"}, [h("span", {style: "color:#4da3ff", text: "■ cameras"}), h("span", {style: "color:#ffb000", text: "■ retrieved views"}),
        h("span", {style: "color:#4caf7a", text: "■ objects observed"}), h("span", {style: "color:#e5534b", text: "■ objects predicted (grey: too uncertain to draw; bars: ±1σ)"})]),
      h("h2", {text: "Per round"}), charts, h("h2", {text: "Memory versions"}),
      h("table", {}, [h("thead", {}, [h("tr", {}, ["version", "parent", "points", "message", "created", "changed"].map(function (t) { return h("th", {text: t}); }))]), versions]),
      h("h2", {text: "Frames"}), frames);
    const record = await api("/v1/worlds/" + id);
    const viewer = new SpatiaViewer.Viewer(canvas);
    viewer.onFirstDraw = function (t) { window.spatiaStats.firstPictureMs = t; };
    if (record.memory_version) {
      SpatiaViewer.loadPoints(viewer, "/v1/worlds/" + id + "/points?version=" + record.memory_version, 200000, 1000000, function (done, total) {
        window.spatiaStats.pointsLoaded = done;
        viewStatus.dataset.loaded = done;
        viewStatus.textContent = done.toLocaleString() + " of " + total.toLocaleString() + " points (memory v" + record.memory_version + ")";
      }).catch(function (err) { viewStatus.textContent = err.message; });
    } else {
      viewStatus.textContent = "the world has no memory yet";
    }
    const [cams, rounds] = await Promise.all([api("/v1/worlds/" + id + "/cameras"), api("/v1/worlds/" + id + "/rounds")]);
    const lines = {pos: [], col: []};
    const retrieved = new Set();
    rounds.forEach(function (r) { (r.references || []).forEach(function (i) { retrieved.add(i); }); });
    const step = Math.max(1, Math.floor(cams.w2c.length / 60));
    cams.w2c.forEach(function (w2c, i) {
      if (retrieved.has(i)) SpatiaViewer.frustumLines(w2c, cams.intrinsics[i], cams.width, cams.height, 0.35, [255, 176, 0], lines);
      else if (i % step === 0) SpatiaViewer.frustumLines(w2c, cams.intrinsics[i], cams.width, cams.height, 0.2, [77, 163, 255], lines);
    });
    rounds.forEach(function (r) {
      (r.objects || []).forEach(function (o) {
        if (o.predicted && o.predicted.position) {
          // drawn into the conditioning: red; predicted but too uncertain to draw: grey; +-1 sigma bars
          const drawn = o.predicted.drawn || [], pos = o.predicted.position;
          for (let i = 1; i < pos.length; i++) {
            SpatiaViewer.polyline([pos[i - 1], pos[i]], drawn[i] === false ? [140, 140, 140] : [229, 83, 75], lines);
          }
          if (o.predicted.sigma) SpatiaViewer.errorBars(pos, o.predicted.sigma, [229, 160, 75], lines, 6);
        }
        if (o.observed && o.observed.position) SpatiaViewer.polyline(o.observed.position, [76, 175, 122], lines);
      });
    });
    viewer.setLines(lines.pos, lines.col);
    if (rounds.length) {
      charts.append(
        SpatiaCharts.lines("memory coverage of the target views", {coverage: rounds.map(function (r) { return r.coverage; })}),
        SpatiaCharts.lines("retrieved reference frames", {count: rounds.map(function (r) { return (r.references || []).length; }),
          "mean score": rounds.map(function (r) { const s = r.reference_scores || []; return s.length ? s.reduce(function (a, b) { return a + b; }, 0) / s.length : null; })}),
        SpatiaCharts.lines("loop closure (dB)", {"memory vs first frame": rounds.map(function (r) { return r.loop_closure ? r.loop_closure.memory_vs_first_psnr : null; }),
          "exact returns": rounds.map(function (r) { return r.loop_closure ? r.loop_closure.revisit_psnr_mean : null; })}),
        SpatiaCharts.lines("keyframe recall (dB): the memory at the cameras of frames it fused", {
          "recall": rounds.map(function (r) { return r.loop_closure && r.loop_closure.recall ? r.loop_closure.recall.psnr : null; }),
          "near returns": rounds.map(function (r) { return r.loop_closure ? r.loop_closure.revisit_near_psnr_mean : null; })}),
        SpatiaCharts.lines("keyframes per round", {keyframes: rounds.map(function (r) { return (r.keyframes || []).length; })}),
        SpatiaCharts.stacked("stage seconds", rounds.map(function (r) { const t = {}; for (const k in r.timings) if (k !== "total_s") t[k.replace(/_s$/, "")] = r.timings[k]; return t; })));
    } else {
      charts.appendChild(h("p", {class: "muted", text: "no rounds yet"}));
    }
    const memoryVersions = await api("/v1/worlds/" + id + "/memory");
    memoryVersions.forEach(function (v) {
      const changed = h("td");
      if (v.parent) changed.appendChild(h("button", {text: "what changed", onclick: function () {
        changed.textContent = "…";
        api("/v1/worlds/" + id + "/memory/diff?from=" + v.parent + "&to=" + v.version).then(function (d) {
          changed.textContent = "+" + d.added.length + " added · " + d.moved.length + " edited · −" + d.deleted.length + " removed";
        }).catch(function (err) { changed.textContent = err.message; });
      }}));
      versions.appendChild(h("tr", {}, [h("td", {text: "v" + v.version}), h("td", {text: v.parent ? "v" + v.parent : ""}),
        h("td", {text: v.points != null ? v.points.toLocaleString() : ""}), h("td", {text: v.message}), h("td", {text: v.created || ""}), changed]));
    });
    const first = Math.max(0, record.frames - 24);
    for (let i = first; i < record.frames; i++) frames.appendChild(h("img", {src: "/v1/worlds/" + id + "/frames/" + i + "?thumb=true", alt: "frame " + i, loading: "lazy"}));
  }

  // --- the machine ---------------------------------------------------------------------------
  function machinePage() {
    const table = h("table", {class: "kv", id: "machine"});
    main.replaceChildren(h("h1", {text: "Machine"}), table);
    function gb(used, total) { return used.toFixed(1) + " of " + total.toFixed(1) + " GB"; }
    async function refresh() {
      const m = await api("/v1/machine");
      const rows = [["CPU", m.cpu_percent.toFixed(0) + "% of " + m.cpu_count + " cores" + (m.load_average ? " · load " + m.load_average.map(function (x) { return x.toFixed(2); }).join(" ") : "")],
        ["RAM", gb(m.ram_used_gb, m.ram_total_gb)], ["disk (" + m.data_dir + ")", gb(m.disk_total_gb - m.disk_free_gb, m.disk_total_gb) + " · " + m.disk_free_gb.toFixed(1) + " GB free"],
        ["GPU", m.gpu ? m.gpu.name : "none"]];
      if (m.gpu) rows.push(["VRAM", gb(m.gpu.vram_used_gb, m.gpu.vram_total_gb)], ["GPU utilisation", m.gpu.utilisation_percent == null ? "unknown (needs NVML)" : m.gpu.utilisation_percent + "%"]);
      rows.push(["queued jobs", String(m.queue_depth)], ["loaded models", m.loaded_models.join(", ") || "none"]);
      table.replaceChildren.apply(table, rows.map(function (r) { return h("tr", {}, [h("td", {text: r[0]}), h("td", {text: r[1]})]); }));
    }
    refresh().catch(function (err) { flash(err.message); });
    const timer = setInterval(function () { refresh().catch(function () {}); }, 2000);
    cleanup.push(function () { clearInterval(timer); });
  }

  function route() {
    cleanup.forEach(function (f) { f(); });
    cleanup = [];
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    document.querySelectorAll("header nav a").forEach(function (a) { a.classList.toggle("active", a.dataset.nav === (parts[0] === "job" || !parts[0] ? "jobs" : parts[0].replace(/^world$/, "worlds"))); });
    const run = parts[0] === "job" ? jobPage(parts[1]) : parts[0] === "worlds" ? worldsPage() : parts[0] === "world" ? worldPage(parts[1])
      : parts[0] === "machine" ? machinePage() : jobsPage();
    if (run && run.catch) run.catch(function (err) { if (err.message !== "not signed in") flash(err.message); });
  }
  window.addEventListener("hashchange", route);
  api("/v1/session").then(function (s) {
    document.getElementById("session").textContent = s.signed_in ? "signed in" : s.token_required ? "not signed in" : "local";
    if (s.token_required && !s.signed_in) showSignIn(); else route();
  }).catch(function (err) { main.textContent = err.message; });
})();
