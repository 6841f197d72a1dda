// SPDX-License-Identifier: Apache-2.0
//
// Flamenco v3 job type "Spatia Batch": one task per shot .blend, each running
//   spatia batch <shot.blend> --out <output_dir> [options]
// on a worker. Tasks share the output folder: each shot writes shots/<name>/ and merges its
// entry into summary.json under a file lock, and a shot already finished with the same inputs
// is skipped, so a requeued job only redoes what failed. A task fails when its shot fails
// (spatia batch exits with the number of failed shots).

const JOB_TYPE = {
    label: "Spatia Batch",
    description: "Generate Spatia shots (camera, prompts and settings saved in each .blend by the Spatia extension), one task per shot",
    settings: [
        // Set by the Flamenco add-on to the submitted file.
        { key: "blendfile", type: "string", required: true, visible: "web",
          description: "The submitted .blend; it is the only shot when 'shots' is empty" },
        { key: "shots", type: "string", default: "",
          description: "Shot .blend files, separated by ';' or new lines (relative ones are relative to 'shots_dir'); empty: the submitted file" },
        { key: "shots_dir", type: "string", subtype: "dir_path", default: "",
          description: "Folder that relative shot paths are relative to" },
        { key: "output_dir", type: "string", subtype: "dir_path", required: true,
          eval: "bpy.path.abspath('//spatia_batch')",
          evalInfo: { showLinkButton: true, description: "spatia_batch beside the .blend" },
          description: "Output folder shared by every task (summary.json, shots/<name>/)" },
        { key: "generator", type: "string", default: "shot",
          choices: ["shot", "preview", "spatia-5b", "wan-vace-1.3b", "wan-vace-14b"],
          description: "Generator for every shot; 'shot': each shot's own setting" },
        { key: "samples", type: "int32", default: 0,
          description: "Cycles samples of the first-frame render; 0: the quality preset's" },
        { key: "resolution", type: "string", default: "scene", choices: ["scene", "quality"],
          description: "Frame size: the scene's render size, or the quality preset's pixel count at the scene's aspect" },
        { key: "worlds_dir", type: "string", subtype: "dir_path", default: "",
          description: "Where worlds named in shot settings live (optional)" },
        { key: "force", type: "bool", default: false,
          description: "Run shots again even when they finished with the same inputs" },
        { key: "spatia_exe", type: "string", default: "spatia",
          description: "The spatia command on the workers (e.g. {spatia} with a two-way variable in flamenco-manager.yaml)" },
        { key: "python_exe", type: "string", default: "",
          description: "If set, run '<python> -m spatia.cli batch ...' with this Python instead of spatia_exe" },
        { key: "task_type", type: "string", default: "misc",
          description: "Flamenco task type of the shot tasks (workers only take the types they list)" },
    ]
};

function compileJob(job) {
    const settings = job.settings;
    const shots = shotPaths(settings);
    if (shots.length === 0) {
        throw "Spatia Batch: no shots; list .blend files in 'shots' or submit a saved .blend";
    }
    if (!settings.output_dir) {
        throw "Spatia Batch: 'output_dir' is empty";
    }
    const seen = {};
    for (const shot of shots) {
        const name = shotName(shot);
        if (seen[name]) {
            throw `Spatia Batch: ${seen[name]} and ${shot} would both write to shots/${name}/; rename one`;
        }
        seen[name] = shot;
        const task = author.Task(`spatia-${name}`, settings.task_type || "misc");
        task.addCommand(author.Command("exec", spatiaCommand(settings, shot)));
        job.addTask(task);
    }
}

// The shot list: 'shots' split on ';' and new lines, relative paths joined to shots_dir.
function shotPaths(settings) {
    const listed = String(settings.shots || "").split(/[;\r\n]+/)
        .map(function (s) { return s.trim(); })
        .filter(function (s) { return s.length > 0; });
    if (listed.length === 0) {
        return settings.blendfile ? [settings.blendfile] : [];
    }
    return listed.map(function (shot) {
        return (isAbsolute(shot) || !settings.shots_dir) ? shot : joinPath(settings.shots_dir, shot);
    });
}

function spatiaCommand(settings, shot) {
    let exe = settings.spatia_exe || "spatia";
    let args = ["batch", shot, "--out", settings.output_dir];
    if (settings.python_exe) {
        exe = settings.python_exe;
        args = ["-m", "spatia.cli"].concat(args);
    }
    if (settings.generator && settings.generator !== "shot") {
        args.push("--generator", settings.generator);
    }
    if (settings.samples > 0) {
        args.push("--samples", String(settings.samples));
    }
    if (settings.resolution && settings.resolution !== "scene") {
        args.push("--resolution", settings.resolution);
    }
    if (settings.worlds_dir) {
        args.push("--worlds", settings.worlds_dir);
    }
    if (settings.force) {
        args.push("--force");
    }
    return { exe: exe, args: args };
}

function isAbsolute(p) {
    return p.charAt(0) === "/" || p.charAt(0) === "\\" || /^[A-Za-z]:[\\/]/.test(p) || p.charAt(0) === "{";
}

function joinPath(dir, name) {
    return /[\\/]$/.test(dir) ? dir + name : dir + "/" + name;
}

// The output folder name of a shot: its file name without .blend (as spatia batch names it).
function shotName(p) {
    const base = p.split(/[\\/]/).pop();
    return base.replace(/\.blend$/i, "");
}
