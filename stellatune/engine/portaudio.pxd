# The PortAudio subset the engine uses from Cython (device listing, init); the stream and its
# callback live in csrc/st_audio.c.
cdef extern from "portaudio.h" nogil:
    ctypedef int PaError
    ctypedef int PaDeviceIndex
    ctypedef int PaHostApiIndex
    ctypedef double PaTime
    ctypedef enum PaHostApiTypeId:
        paJACK
    enum:
        paNoError
        paNoDevice

    ctypedef struct PaDeviceInfo:
        int structVersion
        const char *name
        PaHostApiIndex hostApi
        int maxInputChannels
        int maxOutputChannels
        PaTime defaultLowInputLatency
        PaTime defaultLowOutputLatency
        PaTime defaultHighInputLatency
        PaTime defaultHighOutputLatency
        double defaultSampleRate

    ctypedef struct PaHostApiInfo:
        int structVersion
        PaHostApiTypeId type
        const char *name
        int deviceCount
        PaDeviceIndex defaultInputDevice
        PaDeviceIndex defaultOutputDevice

    PaError Pa_Initialize()
    PaError Pa_Terminate()
    const char *Pa_GetErrorText(PaError code)
    PaDeviceIndex Pa_GetDeviceCount()
    PaDeviceIndex Pa_GetDefaultOutputDevice()
    const PaDeviceInfo *Pa_GetDeviceInfo(PaDeviceIndex device)
    const PaHostApiInfo *Pa_GetHostApiInfo(PaHostApiIndex hostApi)
    PaHostApiIndex Pa_HostApiTypeIdToHostApiIndex(PaHostApiTypeId type)
