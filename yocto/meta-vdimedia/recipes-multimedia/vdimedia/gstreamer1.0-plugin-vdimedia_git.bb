SUMMARY = "vdimedia GStreamer plugin: G.722 codec and echo-cancellation elements"
DESCRIPTION = "libgstvdimedia.so: elements the vdimedia engine needs that GStreamer lacks or \
               that thin-client images should not need FFmpeg for (g722enc, g722dec, vdiaec)."

require vdimedia.inc

# gstreamer-1.0 and gstreamer-audio-1.0 (plugins-base) through gstreamer-rs.
DEPENDS += "glib-2.0 \
            gstreamer1.0 \
            gstreamer1.0-plugins-base"

do_compile() {
    oe_cargo_build -p gst-plugin-vdimedia --lib
}

do_install() {
    install -d ${D}${libdir}/gstreamer-1.0
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/libgstvdimedia.so ${D}${libdir}/gstreamer-1.0/
}

FILES:${PN} += "${libdir}/gstreamer-1.0/libgstvdimedia.so"
