//! `libgstvdimedia.so`: the vdimedia GStreamer plugin.
//!
//! Elements follow gst-plugins-rs' layout, one folder per element with `mod.rs` (the public
//! wrapper and registration) and `imp.rs` (the implementation). The plugin is registered now so
//! packaging, `GST_PLUGIN_PATH` and `gst-inspect-1.0` work from the start; its first elements
//! (G.722 without FFmpeg, AEC3 echo cancellation) are the next work item (see README.md).

use gst::glib;

fn plugin_init(_plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Ok(())
}

gst::plugin_define!(
    vdimedia,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
