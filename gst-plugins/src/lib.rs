//! `libgstvdimedia.so`: the vdimedia GStreamer plugin.
//!
//! Elements follow gst-plugins-rs' layout, one folder per element with `mod.rs` (the public
//! wrapper and registration) and `imp.rs` (the implementation).

use gst::glib;

mod g722dec;
mod g722enc;
mod vdiaec;
mod vdiaecprobe;

#[cfg(test)]
mod test_signals;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    g722enc::register(plugin)?;
    g722dec::register(plugin)?;
    vdiaec::register(plugin)?;
    vdiaecprobe::register(plugin)?;
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
