/* A stand-in for bcryptprimitives.dll, which Wine 8 (Debian 12's) lacks and Rust's standard
 * library (1.78 and later) imports for ProcessPrng, its source of randomness. Built with mingw
 * and copied into the Wine prefix by scripts/wine-test; real Windows has its own. It draws from
 * RtlGenRandom (advapi32's SystemFunction036), the generator Rust used before. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
