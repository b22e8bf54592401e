# webrtcbin's ICE transport is libnice's GStreamer plugin (nicesrc, nicesink), which the default
# PACKAGECONFIG does not build. It is packaged in libnice itself.
PACKAGECONFIG:append:vdimedia = " gstreamer"
# vdimediad switches libnice's UPnP IGD off in every agent (no SSDP discovery, no router port
# mappings; webrtc/ice.rs disable_upnp), so libnice need not link gupnp-igd, which would bring
# gupnp, gssdp and libsoup into the image for nothing.
PACKAGECONFIG:remove:vdimedia = "gupnp"
