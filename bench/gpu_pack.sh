#!/usr/bin/env bash
# Packs what bench/gpu_session.sh needs on a lent GPU machine, which has no cargo and reaches
# no registry: the release binary (xz, under the device tool's 64 MiB carry limit), the Vulkan
# loader packages, and two of CAM's natural images. Run it here, before asking for the machine
# (the build is the slow part, and it costs no device time).
#
#   bench/gpu_pack.sh            # then carry .gpu (see bench/gpu_session.sh)
#
# Everything lands in .gpu/ (git-ignored).
source "$(dirname "$0")/common.sh"
NATURAL="${NATURAL:-../shared/data/images/fourier-features-div2k-test}"
PACK=.gpu
rm -rf "$PACK" && mkdir -p "$PACK/debs" "$PACK/images"
build_bin
xz -T0 -3 -c "$BIN" > "$PACK/nfield.xz"
git rev-parse --short HEAD > "$PACK/commit"
# The Vulkan and EGL loaders (the driver itself is on the machine), amd64 as the machine is.
apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
mkdir -p /tmp/amd64/partial
apt-get "${apt_options[@]}" update -qq
(cd "$PACK/debs" && apt-get "${apt_options[@]}" download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
for img in 012 013; do
  cp "$NATURAL/image_$img.jpg" "$PACK/images/" 2> /dev/null || echo "no $NATURAL/image_$img.jpg: the CAM part will be skipped" >&2
done
du -sh "$PACK"
echo "packed $(cat "$PACK/commit") into $PACK/"
