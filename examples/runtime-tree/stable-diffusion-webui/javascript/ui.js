onUiLoaded(function() {});
