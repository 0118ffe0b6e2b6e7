import os, fcntl, struct, mmap
kvm = os.open("/dev/kvm", os.O_RDWR)
vm = fcntl.ioctl(kvm, 0xAE01, 1)                    # KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)
args = bytearray(struct.pack("QQ48x", 2 << 20, 0))  # struct kvm_create_guest_memfd
gmem = fcntl.ioctl(vm, 0xC040AED4, args, True)      # KVM_CREATE_GUEST_MEMFD
print(os.readlink(f"/proc/self/fd/{gmem}"), oct(os.fstat(gmem).st_mode))
for name, op in [("read", lambda: os.read(gmem, 8)),
                 ("lseek", lambda: os.lseek(gmem, 0, os.SEEK_SET)),
                 ("mmap", lambda: mmap.mmap(gmem, 4096))]:
    try: op()
    except OSError as e: print(f"{name}: {os.strerror(e.errno)}")
