# Cross build for arm64 boards with Debian's gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross. Tests run the arm64 binaries under qemu-user:
# add_test() prefixes executable targets with CMAKE_CROSSCOMPILING_EMULATOR,
# and -L gives qemu the arm64 sysroot (dynamic loader and libc).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(RSTMEM_CROSS_TRIPLET aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${RSTMEM_CROSS_TRIPLET}-gcc)

set(CMAKE_FIND_ROOT_PATH /usr/${RSTMEM_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

find_program(RSTMEM_QEMU_AARCH64 qemu-aarch64-static REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${RSTMEM_QEMU_AARCH64} -L /usr/${RSTMEM_CROSS_TRIPLET})
