# webrtcbin's ICE transport is libnice's GStreamer plugin (nicesrc, nicesink), which the default
# PACKAGECONFIG does not build. It is packaged in libnice itself.
PACKAGECONFIG:append:vdimedia = " gstreamer"
