console.log("stand-in webui script.js");
