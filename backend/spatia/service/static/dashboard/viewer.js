"use strict";
// A WebGL point-cloud view: points arrive as binary chunks in a level-of-detail order (any prefix is an
// even sample), so the first chunk is drawn at once and the picture fills in as the rest comes.
// Lines: camera frusta, retrieved views, object tracks. Orbit with the left button, pan with the
// right one (or shift), zoom with the wheel.
(function () {
  const VS = "attribute vec3 p; attribute vec3 c; uniform mat4 m; uniform float s; varying vec3 v;" +
    "void main(){ gl_Position = m * vec4(p, 1.0); gl_PointSize = s; v = c; }";
  const FS = "precision mediump float; varying vec3 v; void main(){ gl_FragColor = vec4(v, 1.0); }";

  function compile(gl, type, text) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, text);
    gl.compileShader(shader);
    return shader;
  }
  function perspective(fovy, aspect, near, far) {
    const f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
    return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
  }
  function multiply(a, b) {  // column-major 4x4
    const o = new Array(16);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[k * 4 + j] * b[i * 4 + k];
      o[i * 4 + j] = s;
    }
    return o;
  }
  function lookAt(eye, target, up) {
    let zx = eye[0] - target[0], zy = eye[1] - target[1], zz = eye[2] - target[2];
    let l = Math.hypot(zx, zy, zz) || 1; zx /= l; zy /= l; zz /= l;
    let xx = up[1] * zz - up[2] * zy, xy = up[2] * zx - up[0] * zz, xz = up[0] * zy - up[1] * zx;
    l = Math.hypot(xx, xy, xz) || 1; xx /= l; xy /= l; xz /= l;
    const yx = zy * xz - zz * xy, yy = zz * xx - zx * xz, yz = zx * xy - zy * xx;
    return [xx, yx, zx, 0, xy, yy, zy, 0, xz, yz, zz, 0,
      -(xx * eye[0] + xy * eye[1] + xz * eye[2]), -(yx * eye[0] + yy * eye[1] + yz * eye[2]),
      -(zx * eye[0] + zy * eye[1] + zz * eye[2]), 1];
  }

  function Viewer(canvas) {
    const gl = canvas.getContext("webgl", {antialias: false, preserveDrawingBuffer: true});
    if (!gl) throw new Error("WebGL is not available in this browser");
    this.gl = gl; this.canvas = canvas;
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VS));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(program);
    this.program = program;
    this.loc = {p: gl.getAttribLocation(program, "p"), c: gl.getAttribLocation(program, "c"),
      m: gl.getUniformLocation(program, "m"), s: gl.getUniformLocation(program, "s")};
    this.points = {pos: gl.createBuffer(), col: gl.createBuffer(), count: 0, total: 0};
    this.lines = {pos: gl.createBuffer(), col: gl.createBuffer(), count: 0};
    this.target = [0, 0, 0]; this.distance = 5; this.yaw = 0.8; this.pitch = 0.4; this.up = [0, 0, 1];
    this.pointSize = 2; this.firstDrawn = null; this.frameRequested = false;
    this._bindControls();
  }
  Viewer.prototype.allocate = function (total) {
    const gl = this.gl;
    this.points.total = total; this.points.count = 0;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.points.pos);
    gl.bufferData(gl.ARRAY_BUFFER, total * 12, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.points.col);
    gl.bufferData(gl.ARRAY_BUFFER, total * 3, gl.STATIC_DRAW);
  };
  Viewer.prototype.addChunk = function (offset, xyz, rgb) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.points.pos);
    gl.bufferSubData(gl.ARRAY_BUFFER, offset * 12, xyz);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.points.col);
    gl.bufferSubData(gl.ARRAY_BUFFER, offset * 3, rgb);
    this.points.count = Math.max(this.points.count, offset + xyz.length / 3);
    this.request();
  };
  Viewer.prototype.frameOn = function (xyz) {  // centre on a sample: median-ish bounds
    const n = xyz.length / 3;
    if (!n) return;
    const c = [0, 0, 0];
    for (let i = 0; i < n; i++) { c[0] += xyz[3 * i]; c[1] += xyz[3 * i + 1]; c[2] += xyz[3 * i + 2]; }
    c[0] /= n; c[1] /= n; c[2] /= n;
    const d = [];
    for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 5000))) d.push(Math.hypot(xyz[3 * i] - c[0], xyz[3 * i + 1] - c[1], xyz[3 * i + 2] - c[2]));
    d.sort(function (a, b) { return a - b; });
    this.target = c; this.distance = Math.max(0.5, 2.5 * (d[Math.floor(d.length * 0.9)] || 1));
  };
  Viewer.prototype.setLines = function (positions, colours) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.lines.pos);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(positions), gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.lines.col);
    gl.bufferData(gl.ARRAY_BUFFER, new Uint8Array(colours), gl.STATIC_DRAW);
    this.lines.count = positions.length / 3;
    this.request();
  };
  Viewer.prototype.request = function () {
    if (this.frameRequested) return;
    this.frameRequested = true;
    const self = this;
    requestAnimationFrame(function () { self.frameRequested = false; self.draw(); });
  };
  Viewer.prototype._attrib = function (buffer, loc, size, type, normalised) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, size, type, normalised, 0, 0);
  };
  Viewer.prototype.draw = function () {
    const gl = this.gl, canvas = this.canvas;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    gl.viewport(0, 0, w, h);
    gl.clearColor(0.05, 0.05, 0.06, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.useProgram(this.program);
    const cp = Math.cos(this.pitch), eye = [this.target[0] + this.distance * cp * Math.cos(this.yaw),
      this.target[1] + this.distance * cp * Math.sin(this.yaw), this.target[2] + this.distance * Math.sin(this.pitch)];
    const m = multiply(perspective(0.9, w / Math.max(h, 1), this.distance / 500, this.distance * 50), lookAt(eye, this.target, this.up));
    gl.uniformMatrix4fv(this.loc.m, false, new Float32Array(m));
    if (this.points.count) {
      gl.uniform1f(this.loc.s, this.pointSize);
      this._attrib(this.points.pos, this.loc.p, 3, gl.FLOAT, false);
      this._attrib(this.points.col, this.loc.c, 3, gl.UNSIGNED_BYTE, true);
      gl.drawArrays(gl.POINTS, 0, this.points.count);
      if (this.firstDrawn === null) {
        this.firstDrawn = performance.now();
        if (this.onFirstDraw) this.onFirstDraw(this.firstDrawn);
      }
    }
    if (this.lines.count) {
      gl.uniform1f(this.loc.s, 1);
      this._attrib(this.lines.pos, this.loc.p, 3, gl.FLOAT, false);
      this._attrib(this.lines.col, this.loc.c, 3, gl.UNSIGNED_BYTE, true);
      gl.drawArrays(gl.LINES, 0, this.lines.count);
    }
  };
  Viewer.prototype._bindControls = function () {
    const self = this, canvas = this.canvas;
    let drag = null;
    canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
    canvas.addEventListener("mousedown", function (e) { drag = {x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey}; });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (e) {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      drag.x = e.clientX; drag.y = e.clientY;
      if (drag.pan) {
        const s = self.distance / 600, sy = Math.sin(self.yaw), cy = Math.cos(self.yaw);
        self.target[0] += (sy * dx) * s; self.target[1] -= (cy * dx) * s; self.target[2] += dy * s;
      } else {
        self.yaw -= dx * 0.005;
        self.pitch = Math.max(-1.5, Math.min(1.5, self.pitch + dy * 0.005));
      }
      self.request();
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      self.distance *= Math.exp(e.deltaY * 0.001);
      self.request();
    }, {passive: false});
  };

  // Loads a world's memory: the first chunk (an even sample) is drawn at once, the rest follows.
  async function loadPoints(viewer, url, firstChunk, chunk, onProgress) {
    let offset = 0, total = null;
    while (total === null || offset < total) {
      const limit = total === null ? firstChunk : chunk;
      const sep = url.indexOf("?") < 0 ? "?" : "&";
      const response = await fetch(url + sep + "offset=" + offset + "&limit=" + limit, {credentials: "same-origin"});
      if (!response.ok) throw new Error("points: HTTP " + response.status);
      const data = await response.arrayBuffer();
      const header = new DataView(data, 0, 16);
      const count = header.getUint32(12, true);
      if (total === null) { total = header.getUint32(4, true); viewer.allocate(total); }
      const xyz = new Float32Array(data, 16, count * 3);
      const rgb = new Uint8Array(data, 16 + count * 12, count * 3);
      if (offset === 0) viewer.frameOn(xyz);
      viewer.addChunk(offset, xyz, rgb);
      offset += count;
      if (onProgress) onProgress(offset, total);
      if (count === 0) break;
    }
    return total;
  }

  // Frustum lines of cameras (OpenCV w2c rows, pixel intrinsics) at a depth `scale`.
  function frustumLines(w2c, k, width, height, scale, colour, out) {
    const r = w2c, t = [r[0][3], r[1][3], r[2][3]];
    // c2w: R^T, -R^T t
    const c = [-(r[0][0] * t[0] + r[1][0] * t[1] + r[2][0] * t[2]), -(r[0][1] * t[0] + r[1][1] * t[1] + r[2][1] * t[2]),
      -(r[0][2] * t[0] + r[1][2] * t[1] + r[2][2] * t[2])];
    function world(u, v) {
      const x = (u - k[2]) / k[0] * scale, y = (v - k[3]) / k[1] * scale, z = scale;
      return [c[0] + r[0][0] * x + r[1][0] * y + r[2][0] * z, c[1] + r[0][1] * x + r[1][1] * y + r[2][1] * z,
        c[2] + r[0][2] * x + r[1][2] * y + r[2][2] * z];
    }
    const corners = [world(0, 0), world(width, 0), world(width, height), world(0, height)];
    for (let i = 0; i < 4; i++) {
      out.pos.push.apply(out.pos, c); out.pos.push.apply(out.pos, corners[i]);
      out.pos.push.apply(out.pos, corners[i]); out.pos.push.apply(out.pos, corners[(i + 1) % 4]);
      for (let j = 0; j < 4; j++) out.col.push.apply(out.col, colour);
    }
  }
  function polyline(points, colour, out) {
    for (let i = 1; i < points.length; i++) {
      out.pos.push.apply(out.pos, points[i - 1]); out.pos.push.apply(out.pos, points[i]);
      out.col.push.apply(out.col, colour); out.col.push.apply(out.col, colour);
    }
  }
  // Uncertainty as error bars: at every `every`-th point, three axis-aligned bars of +-sigma.
  function errorBars(points, sigma, colour, out, every) {
    for (let i = 0; i < points.length; i += every) {
      const p = points[i], s = sigma[i] || 0;
      if (!(s > 0)) continue;
      for (let a = 0; a < 3; a++) {
        const lo = p.slice(), hi = p.slice();
        lo[a] -= s; hi[a] += s;
        out.pos.push.apply(out.pos, lo); out.pos.push.apply(out.pos, hi);
        out.col.push.apply(out.col, colour); out.col.push.apply(out.col, colour);
      }
    }
  }
  window.SpatiaViewer = {Viewer: Viewer, loadPoints: loadPoints, frustumLines: frustumLines, polyline: polyline,
                         errorBars: errorBars};
})();
