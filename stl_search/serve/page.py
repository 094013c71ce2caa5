"""The search page (one HTML file, plain JavaScript, no external resources).

Pick one of the index's frames or upload an image, drag a box around the person on it, set the
filters, press Search: the page shows the status line (back end, search time, threshold, "no
match above threshold"), the timeline, the sightings (best crop, source, interval, frames,
similarity) and the top hits. The URL parameters ``file``, ``frame``, ``box=x1,y1,x2,y2`` (and
``run=1`` to search at once) pre-fill it, so that a result can be linked to.
"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>stl-search</title>
<style>
body{font-family:sans-serif;margin:12px;font-size:14px}
#canvas{border:1px solid #888;cursor:crosshair;max-width:100%}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
.crop{height:96px}.nomatch{color:#b00;font-weight:bold}label{margin-right:10px}
</style></head><body>
<h2>stl-search</h2>
<div id="info">loading the index...</div>
<p><label>indexed frame <select id="frames"></select></label>
<label>or upload <input type="file" id="upload" accept="image/*"></label></p>
<canvas id="canvas" width="320" height="200"></canvas>
<p><label>box <input id="box" size="28" placeholder="x1,y1,x2,y2 (drag on the image)"></label>
<label>top-k <input id="topk" value="10" size="3"></label>
<label>min similarity <input id="minsim" size="5" placeholder="calibrated"></label>
<label>max gap <input id="maxgap" value="2" size="3"></label></p>
<p><label>camera <select id="camera"><option value="">all</option></select></label>
<label>source glob <input id="source" size="20"></label>
<label>time range (s) <input id="tfrom" size="5"> to <input id="tto" size="5"></label>
<button id="go">Search</button></p>
<div id="status"></div><img id="timeline">
<h3>Sightings</h3><table id="sightings"></table>
<h3>Top hits</h3><table id="hits"></table>
<script>
const $ = id => document.getElementById(id);
let image = null, upload = null, drag = null, scale = 1;
const params = new URLSearchParams(location.search);
function api(path, opts) {
  return fetch(path, opts).then(r => r.json().then(j => {
    if (!r.ok) throw new Error(j.error || r.statusText); return j; }));
}
function draw() {
  const c = $('canvas'), g = c.getContext('2d');
  if (!image) return;
  scale = Math.min(1, 800 / image.width);
  c.width = image.width * scale; c.height = image.height * scale;
  g.drawImage(image, 0, 0, c.width, c.height);
  const b = $('box').value.split(',').map(Number);
  if (b.length == 4 && b.every(v => !isNaN(v))) {
    g.strokeStyle = '#0a0'; g.lineWidth = 2;
    g.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
  }
}
function show(src) { image = new Image(); image.onload = draw; image.src = src; }
function pickFrame() {
  const [file, frame] = JSON.parse($('frames').value); upload = null;
  show('/api/frame?file=' + encodeURIComponent(file) + '&frame=' + frame);
}
$('frames').onchange = pickFrame;
$('upload').onchange = () => {
  const f = $('upload').files[0]; if (!f) return;
  const form = new FormData(); form.append('image', f);
  api('/api/upload', {method: 'POST', body: form}).then(j => {
    upload = j.token; show(URL.createObjectURL(f)); }).catch(e => $('status').textContent = e);
};
const pos = e => { const r = $('canvas').getBoundingClientRect();
  return [(e.clientX - r.left) / scale, (e.clientY - r.top) / scale]; };
$('canvas').onmousedown = e => { drag = pos(e); };
$('canvas').onmouseup = e => { if (!drag) return; const p = pos(e);
  const b = [Math.min(drag[0], p[0]), Math.min(drag[1], p[1]),
             Math.max(drag[0], p[0]), Math.max(drag[1], p[1])];
  $('box').value = b.map(v => v.toFixed(1)).join(','); drag = null; draw(); };
$('box').onchange = draw;
function cell(row, html) { const td = row.insertCell(); td.innerHTML = html; }
function head(names) { return '<tr>' + names.map(n => '<th>' + n + '</th>').join('') + '</tr>'; }
function text(s) { const d = document.createElement('div'); d.textContent = s; return d.innerHTML; }
function search() {
  const body = {box: $('box').value.split(',').map(Number), topk: Number($('topk').value),
    max_gap: Number($('maxgap').value), min_similarity: $('minsim').value || null,
    cameras: $('camera').value ? [$('camera').value] : [],
    sources: $('source').value ? [$('source').value] : []};
  if ($('tfrom').value && $('tto').value) body.time_range = [$('tfrom').value, $('tto').value];
  if (upload) body.image = {upload: upload};
  else { const [file, frame] = JSON.parse($('frames').value); body.image = {file, frame}; }
  $('status').textContent = 'searching...';
  api('/api/search', {method: 'POST', headers: {'Content-Type': 'application/json'},
                      body: JSON.stringify(body)}).then(r => {
    const th = r.threshold === null ? 'none'
      : r.threshold.toFixed(4) + ' (' + r.threshold_source + ')';
    $('status').innerHTML = 'back end ' + text(r.backend) + ', search ' +
      (1000 * r.search_seconds).toFixed(1) + ' ms, threshold ' + th +
      (r.no_match ? ' <span class="nomatch" id="nomatch">no match above threshold</span>' : '');
    $('timeline').src = r.timeline;
    const s = $('sightings'); s.innerHTML = head(['#', 'best crop', 'source', 'interval',
                                                  'frames', 'best similarity']);
    r.sightings.slice(0, body.topk).forEach(x => {
      const row = s.insertRow(); row.className = 'sighting';
      cell(row, x.rank); cell(row, '<img class="crop" src="/api/crop/' + x.best_box_id + '">');
      cell(row, text(x.source + (x.kind == 'images' ? ' [' + x.camera + ']' : '')));
      cell(row, x.kind == 'video' ? x.start.toFixed(2) + '-' + x.end.toFixed(2) + ' s'
                                  : 'images ' + x.start + '-' + x.end);
      cell(row, x.num_frames); cell(row, x.best_similarity.toFixed(4)); });
    const h = $('hits'); h.innerHTML = head(['#', 'crop', 'file', 'time', 'similarity',
                                             'false-match rate']);
    r.hits.forEach(x => { const row = h.insertRow(); row.className = 'hit';
      cell(row, x.rank); cell(row, '<img class="crop" src="/api/crop/' + x.box_id + '">');
      cell(row, text(x.file_name));
      cell(row, x.frame_index >= 0 ? x.timestamp.toFixed(2) + ' s' : '');
      cell(row, x.similarity.toFixed(4));
      cell(row, x.false_match_rate === undefined ? '' : x.false_match_rate.toExponential(1)); });
  }).catch(e => $('status').textContent = 'error: ' + e.message);
}
$('go').onclick = search;
api('/api/index').then(info => {
  $('info').textContent = info.boxes + ' boxes, back end ' + info.backend + ', threshold ' +
    (info.threshold === null ? 'none (not calibrated)' : info.threshold.toFixed(4));
  info.cameras.forEach(c => $('camera').add(new Option(c, c)));
  return api('/api/frames');
}).then(j => {
  j.frames.forEach(f => $('frames').add(new Option(
    f.file + (f.frame >= 0 ? ' @ frame ' + f.frame : ''), JSON.stringify([f.file, f.frame]))));
  if (params.get('file')) $('frames').value = JSON.stringify([params.get('file'),
                                                              Number(params.get('frame') || -1)]);
  if (params.get('box')) $('box').value = params.get('box');
  pickFrame();
  if (params.get('run')) search();
}).catch(e => $('info').textContent = 'error: ' + e.message);
</script></body></html>
"""
