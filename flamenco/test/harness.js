// Runs a Flamenco job compiler script with a fake `author` API and prints what it authored.
//   node harness.js SCRIPT.js JOB.json     -> {"job_type": ..., "tasks": [...]} or {"error": ...} (exit 1)
"use strict";
const fs = require("fs");
const vm = require("vm");

const [scriptPath, jobPath] = process.argv.slice(2);
const author = {
    Task(name, type) {
        return {
            name, type, commands: [], dependencies: [],
            addCommand(command) { this.commands.push(command); },
            addDependency(task) { this.dependencies.push(task.name); },
        };
    },
    Command(type, parameters) { return { type, parameters }; },
};
const context = vm.createContext({ author, print() {}, path: require("path").posix });
vm.runInContext(fs.readFileSync(scriptPath, "utf8"), context, { filename: scriptPath });

const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));
const tasks = [];
job.addTask = (task) => tasks.push(task);
const jobType = vm.runInContext("JOB_TYPE", context);
try {
    vm.runInContext("compileJob", context)(job);
} catch (error) {
    process.stdout.write(JSON.stringify({ error: String(error) }));
    process.exit(1);
}
process.stdout.write(JSON.stringify({
    job_type: jobType,
    tasks: tasks.map((t) => ({ name: t.name, type: t.type, commands: t.commands, dependencies: t.dependencies })),
}));
