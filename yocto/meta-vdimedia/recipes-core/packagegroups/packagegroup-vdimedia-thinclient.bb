SUMMARY = "vdimedia on a thin client: media engine, CLI and GStreamer plugins"
DESCRIPTION = "Everything an image needs to offload WebRTC calls from virtual desktops: \
               vdimediad and vdimediactl with the plugins they load. The audio stack (PipeWire \
               or ALSA) follows vdimediad's PACKAGECONFIG."
BUGTRACKER = "https://github.com/vdimedia/vdimedia/issues"
SECTION = "multimedia"

inherit packagegroup

RDEPENDS:${PN} = "gstreamer1.0-plugin-vdimedia \
                  vdimediad"
