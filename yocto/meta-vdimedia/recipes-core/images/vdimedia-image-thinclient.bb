SUMMARY = "Thin-client image offloading virtual-desktop WebRTC calls with vdimedia"
DESCRIPTION = "core-image-minimal plus vdimediad, its GStreamer plugins and the audio stack \
               (PipeWire by default, ALSA with PACKAGECONFIG:pn-vdimediad = \"alsa\"). Build \
               it with conf/include/vdimedia-thinclient.inc in local.conf."
BUGTRACKER = "https://github.com/vdimedia/vdimedia/issues"
SECTION = "images"
LICENSE = "MIT"

inherit core-image

IMAGE_INSTALL = "packagegroup-core-boot \
                 packagegroup-vdimedia-thinclient \
                 ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_LINGUAS = ""
