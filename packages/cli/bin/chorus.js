#!/usr/bin/env node
// The `chorus` executable. It lives outside dist/ so that npm links it on a fresh install,
// before the build has made dist/bin.js.
import "../dist/bin.js";
