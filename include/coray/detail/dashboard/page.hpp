#pragma once
/// The dashboard's one page: HTML, CSS and script inline (no CDN: it works offline), polling
/// the JSON endpoints of the view shown once a second. Everything a worker or the program
/// wrote (names, logs) reaches the page as text nodes, never as HTML.

#include <coray/version.hpp>

CORAY_BEGIN_NAMESPACE
namespace detail::dashboard {

inline constexpr const char* page_html = R"coray_page(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>coray dashboard</title>
<style>
 body{font:14px system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
 header{background:#263238;color:#fff;padding:8px 12px;display:flex;flex-wrap:wrap;gap:4px;align-items:center}
 header b{margin-right:12px}
 nav button{background:none;border:0;color:#cfd8dc;padding:6px 10px;font:inherit;cursor:pointer;border-radius:4px}
 nav button.on{background:#455a64;color:#fff}
 main{padding:12px;overflow-x:auto}
 table{border-collapse:collapse;width:100%;background:#fff}
 th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e0e0e0;white-space:nowrap}
 th{background:#eceff1;position:sticky;top:0}
 td.n{text-align:right;font-variant-numeric:tabular-nums}
 .DEAD,.FAILED{color:#c62828}.ALIVE,.FINISHED{color:#2e7d32}.RUNNING{color:#1565c0}
 pre{background:#111;color:#ddd;padding:8px;white-space:pre-wrap;word-break:break-all;max-height:70vh;overflow:auto;margin:0}
 .bar{margin:0 0 8px;display:flex;gap:8px;flex-wrap:wrap;align-items:center}
 #err{color:#c62828}
 button.kill{color:#c62828}
 .track{position:relative;height:18px;background:#eceff1;margin:2px 0 8px}
 .slice{position:absolute;top:0;height:18px;background:#1565c0;min-width:1px}
 .slice.failed{background:#c62828}
 @media (max-width:600px){th,td{padding:3px 4px;font-size:12px}}
</style></head><body>
<header><b>coray</b><nav id="tabs"></nav><span id="err"></span></header>
<main id="view"></main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const views = {machine: "/api/nodes", actors: "/api/actors", tasks: "/api/tasks",
               memory: "/api/objects", configuration: "/api/config", logs: "/api/logs",
               timeline: "/api/timeline"};
let current = location.hash.slice(1) in views ? location.hash.slice(1) : "machine";
let logPid = "", logSince = 0, logText = "", logProcesses = "";
const states = new Set(["ALIVE", "DEAD", "FAILED", "FINISHED", "RUNNING"]);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  for (; n >= 1024 && i < u.length - 1; ++i) n /= 1024;
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
// A table of `rows`, each column [title, value of a row, numeric?].
function table(columns, rows) {
  const head = el("tr", {}, ...columns.map(c => el("th", {}, c[0])));
  const body = rows.map(r => el("tr", {}, ...columns.map(c => {
    const v = c[1](r);
    return el("td", {className: c[2] ? "n" : states.has(v) ? v : ""}, v);
  })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}
async function get(path) {
  const r = await fetch(path, {headers: {"X-Coray-Token": token}});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}
async function act(path) {
  const r = await fetch(path, {method: "POST", headers: {"X-Coray-Token": token}});
  document.getElementById("err").textContent = r.ok ? "" : "refused: " + r.status;
  refresh();
}

const render = {
  machine(d) {
    const s = d.node.store;
    return [el("p", {}, "Host ", d.node.hostname, " — store ", bytes(s.used), " of ",
                  bytes(s.capacity), " used; resources ",
                  Object.entries(d.node.resources_available).map(([k, v]) =>
                      k + " " + v + "/" + d.node.resources_total[k]).join(", ")),
            table([["pid", p => p.pid, 1], ["role", p => p.role], ["name", p => p.name],
                   ["state", p => p.state], ["node", p => p.node, 1],
                   ["CPU %", p => p.cpu_percent == null ? "-" : p.cpu_percent.toFixed(1), 1],
                   ["RSS", p => p.rss_bytes == null ? "-" : bytes(p.rss_bytes), 1],
                   ["GPU ids", p => p.gpu_ids.join(",")],
                   ["current task", p => p.current_task],
                   ["logs", p => el("button", {onclick: () => showLogs(p.pid)}, "logs")]],
                  d.processes)];
  },
  actors(d) {
    return [table([["id", a => a.id, 1], ["class", a => a.class_name], ["name", a => a.name],
                   ["state", a => a.state], ["pid", a => a.pid, 1], ["restarts", a => a.restarts, 1],
                   ["calls done", a => a.calls_done, 1], ["failed", a => a.calls_failed, 1],
                   ["running", a => a.calls_running, 1], ["queued", a => a.calls_queued, 1],
                   ["death cause", a => a.death_cause],
                   ["", a => a.state === "DEAD" ? "" :
                        el("button", {className: "kill", onclick: () => {
                          if (confirm("Kill actor " + a.id + " (" + a.class_name + ")?"))
                            act("/api/actors/" + a.id + "/kill");
                        }}, "kill")]], d.actors)];
  },
  tasks(d) {
    const summary = Object.entries(d.summary).map(([name, counts]) => ({name, counts}));
    return [el("h3", {}, "Summary by function"),
            table([["function", s => s.name],
                   ["counts", s => Object.entries(s.counts).map(([k, v]) => k + ": " + v).join("  ")]],
                  summary),
            el("h3", {}, "Calls (newest first, ", d.tasks.length, " of ", d.total, ")"),
            table([["id", t => t.id, 1], ["function", t => t.name], ["state", t => t.state],
                   ["actor", t => t.actor_id || "", 1], ["pid", t => t.pid || "", 1],
                   ["attempt", t => t.attempt, 1],
                   ["", t => t.state === "QUEUED" || t.state === "WAITING_FOR_DEPENDENCIES" ?
                        el("button", {onclick: () => act("/api/tasks/" + t.id + "/cancel")}, "cancel") : ""]],
                  d.tasks)];
  },
  memory(d) {
    const s = d.store;
    return [el("p", {}, "Store: ", bytes(s.used), " of ", bytes(s.capacity), " used; ",
                  s.spilled_so_far, " objects spilled so far"),
            table([["id", o => o.id || "", 1], ["size", o => bytes(o.size), 1], ["where", o => o.location],
                   ["handles", o => o.handles, 1], ["store refs", o => o.store_refs, 1],
                   ["pins", o => o.pins, 1], ["contained", o => o.contained, 1]], d.objects)];
  },
  configuration(d) {
    return [table([["option", e => e[0]], ["value", e => JSON.stringify(e[1])]], Object.entries(d))];
  },
  timeline(d) {
    if (!d.recording)
      return [el("p", {}, "This runtime records no timeline: start it with ",
                 el("code", {}, "{.record_timeline = true}"), " or CORAY_TIMELINE=1.")];
    const w = d.window_s * 1e6;
    const download = el("a", {href: "/api/timeline/trace?token=" + encodeURIComponent(token),
                              download: "coray-timeline.json"},
                        "download the whole timeline (Chrome trace events: Perfetto, chrome://tracing)");
    const out = [el("div", {className: "bar"}, el("span", {}, "The last " + d.window_s + " s, each call from its sending to its reply; "), download)];
    for (const t of d.tracks) {
      const track = el("div", {className: "track"});
      for (const s of t.slices) {
        const left = Math.max(0, (s.start_us + w) / w * 100);
        const right = Math.min(100, (s.end_us + w) / w * 100);
        const bar = el("div", {className: s.failed ? "slice failed" : "slice",
                               title: s.name + " #" + s.id + ", " + ((s.end_us - s.start_us) / 1000).toFixed(3) + " ms"});
        bar.style.left = left + "%";
        bar.style.width = Math.max(0, right - left) + "%";
        track.append(bar);
      }
      out.push(el("div", {}, t.kind + " pid " + t.pid + " (" + t.slices.length + " calls)"), track);
    }
    if (!d.tracks.length) out.push(el("p", {}, "No call ended in the last " + d.window_s + " s."));
    return out;
  },
  logs(d) {
    const pick = el("select", {onchange: e => showLogs(e.target.value)},
                    el("option", {value: ""}, "all processes"),
                    ...d.processes.map(p => el("option", {value: p.pid, selected: String(p.pid) === String(logPid)},
                                              (p.name || "process") + " pid=" + p.pid)));
    return [el("div", {className: "bar"}, pick, el("span", {}, "following live")),
            el("pre", {id: "log"}, logText)];
  },
};

async function fetchLogs() {
  const path = (logPid ? "/api/logs/" + logPid : "/api/logs") + "?since=" + logSince;
  const [d, all] = await Promise.all([get(path), logPid ? get("/api/logs?since=999999999999") : null]);
  logText = (d.start > logSince ? "" : logText) + d.text;
  logSince = d.next;
  if (logText.length > 200000) logText = logText.slice(-200000);
  return logPid ? {processes: all.processes} : d;
}
function showLogs(pid) {
  logPid = pid ? String(pid) : "";
  logSince = 0;
  logText = "";
  show("logs");
}

async function refresh() {
  try {
    const d = current === "logs" ? await fetchLogs() : await get(views[current]);
    const view = document.getElementById("view");
    const pre = document.getElementById("log");
    const atEnd = !pre || pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    // The logs view keeps its process menu (it may be open) while only the text changes.
    const processes = current === "logs" ? JSON.stringify(d.processes.map(p => p.pid)) : "";
    if (pre && current === "logs" && processes === logProcesses) pre.textContent = logText;
    else view.replaceChildren(...render[current](d));
    logProcesses = processes;
    const log = document.getElementById("log");
    if (log && atEnd) log.scrollTop = log.scrollHeight;
    document.getElementById("err").textContent = "";
  } catch (e) {
    document.getElementById("err").textContent = String(e.message || e);
  }
}
function show(name) {
  current = name;
  logProcesses = "";
  location.hash = name;
  for (const b of document.querySelectorAll("nav button")) b.className = b.textContent === name ? "on" : "";
  refresh();
}
document.getElementById("tabs").append(...Object.keys(views).map(v => el("button", {onclick: () => show(v)}, v)));
show(current);
setInterval(refresh, 1000);
</script></body></html>
)coray_page";

}  // namespace detail::dashboard
CORAY_END_NAMESPACE
