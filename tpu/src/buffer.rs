//! Device buffers: from host slices of every supported element type, back to host, destroyed
//! exactly once.
use crate::client::{Client, ClientInner};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ffi::{self, new_args};
use hlo::{ElementType, NativeType};
use std::sync::Arc;

/// ElementType -> PJRT_Buffer_Type (the C API's own numbering, not XLA's PrimitiveType).
pub fn to_pjrt_type(t: ElementType) -> ffi::PJRT_Buffer_Type {
    match t {
        ElementType::Pred => ffi::PJRT_Buffer_Type_PRED,
        ElementType::S8 => ffi::PJRT_Buffer_Type_S8,
        ElementType::S32 => ffi::PJRT_Buffer_Type_S32,
        ElementType::S64 => ffi::PJRT_Buffer_Type_S64,
        ElementType::U8 => ffi::PJRT_Buffer_Type_U8,
        ElementType::U32 => ffi::PJRT_Buffer_Type_U32,
        ElementType::U64 => ffi::PJRT_Buffer_Type_U64,
        ElementType::F16 => ffi::PJRT_Buffer_Type_F16,
        ElementType::Bf16 => ffi::PJRT_Buffer_Type_BF16,
        ElementType::F32 => ffi::PJRT_Buffer_Type_F32,
        ElementType::F64 => ffi::PJRT_Buffer_Type_F64,
        ElementType::F8E5M2 => ffi::PJRT_Buffer_Type_F8E5M2,
        ElementType::F8E4M3FN => ffi::PJRT_Buffer_Type_F8E4M3FN,
    }
}

/// PJRT_Buffer_Type -> ElementType; `None` for types tpu-run does not handle.
pub fn from_pjrt_type(t: ffi::PJRT_Buffer_Type) -> Option<ElementType> {
    ElementType::ALL.into_iter().find(|e| to_pjrt_type(*e) == t)
}

/// Number of elements of `dims`, checked (no negative dims, no overflow).
pub(crate) fn element_count(dims: &[i64]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| Error::BadDims(dims.to_vec()))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| Error::BadDims(dims.to_vec()))?;
    }
    Ok(n)
}

/// An array on a device.
pub struct Buffer {
    client: Arc<ClientInner>,
    pub(crate) raw: *mut ffi::PJRT_Buffer,
    dtype: ElementType,
    dims: Vec<i64>,
}

// SAFETY: PJRT buffers may be used from any thread (the C API's contract; PjRtBuffer is
// thread-safe). The pointer is destroyed exactly once, in Drop, and the Arc keeps the client
// alive until then.
unsafe impl Send for Buffer {}
// SAFETY: as above; `&Buffer` only allows read-only queries and passing it to execute.
unsafe impl Sync for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({}{:?})", self.dtype, self.dims)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut a: ffi::PJRT_Buffer_Destroy_Args = new_args();
        a.buffer = self.raw;
        if let Err(e) = pjrt!(self.client.api(), PJRT_Buffer_Destroy, &mut a) {
            tracing::warn!("destroying PJRT buffer: {e}");
        }
    }
}

impl Buffer {
    /// Wraps a buffer the plugin returned (takes ownership), reading its type and dims.
    pub(crate) fn from_raw(
        client: &Arc<ClientInner>,
        raw: *mut ffi::PJRT_Buffer,
    ) -> Result<Buffer> {
        if raw.is_null() {
            return Err(Error::Plugin("the plugin returned a NULL buffer".into()));
        }
        // Own it first so it is destroyed even if a query below fails.
        let mut b = Buffer {
            client: client.clone(),
            raw,
            dtype: ElementType::F32,
            dims: Vec::new(),
        };
        let api = client.api();
        let mut t: ffi::PJRT_Buffer_ElementType_Args = new_args();
        t.buffer = raw;
        pjrt!(api, PJRT_Buffer_ElementType, &mut t)?;
        b.dtype = from_pjrt_type(t.type_).ok_or(Error::UnsupportedType(t.type_))?;
        let mut d: ffi::PJRT_Buffer_Dimensions_Args = new_args();
        d.buffer = raw;
        pjrt!(api, PJRT_Buffer_Dimensions, &mut d)?;
        // SAFETY: dims has the lifetime of the buffer, which is alive.
        b.dims = unsafe { crate::api::vec_from(d.dims, d.num_dims) };
        Ok(b)
    }

    pub fn element_type(&self) -> ElementType {
        self.dtype
    }

    pub fn dims(&self) -> &[i64] {
        &self.dims
    }

    pub fn element_count(&self) -> usize {
        element_count(&self.dims).unwrap_or(0)
    }

    /// Bytes on the device.
    pub fn on_device_size(&self) -> Result<usize> {
        let mut a: ffi::PJRT_Buffer_OnDeviceSizeInBytes_Args = new_args();
        a.buffer = self.raw;
        pjrt!(self.client.api(), PJRT_Buffer_OnDeviceSizeInBytes, &mut a)?;
        Ok(a.on_device_size_in_bytes)
    }

    /// True once the buffer was deleted, e.g. donated to an execute.
    pub fn is_deleted(&self) -> Result<bool> {
        let mut a: ffi::PJRT_Buffer_IsDeleted_Args = new_args();
        a.buffer = self.raw;
        pjrt!(self.client.api(), PJRT_Buffer_IsDeleted, &mut a)?;
        Ok(a.is_deleted)
    }

    /// The device holding the buffer.
    pub fn device(&self) -> Result<Device> {
        let mut a: ffi::PJRT_Buffer_Device_Args = new_args();
        a.buffer = self.raw;
        pjrt!(self.client.api(), PJRT_Buffer_Device, &mut a)?;
        Device::from_raw(&self.client, a.device)
    }

    /// Waits until the buffer's data is ready (or its computation failed).
    pub fn block_until_ready(&self) -> Result<()> {
        let mut a: ffi::PJRT_Buffer_ReadyEvent_Args = new_args();
        a.buffer = self.raw;
        pjrt!(self.client.api(), PJRT_Buffer_ReadyEvent, &mut a)?;
        self.client
            .api()
            .await_event(a.event, "PJRT_Buffer_ReadyEvent")
    }

    /// The contents as little-endian bytes, row-major.
    pub fn to_host_bytes(&self) -> Result<Vec<u8>> {
        let api = self.client.api();
        let mut q: ffi::PJRT_Buffer_ToHostBuffer_Args = new_args();
        q.src = self.raw;
        pjrt!(api, PJRT_Buffer_ToHostBuffer, &mut q)?;
        // A size query may still hand back an event; release it.
        api.destroy_event(q.event)?;
        let size = q.dst_size;
        let mut out = vec![0u8; size];
        let mut a: ffi::PJRT_Buffer_ToHostBuffer_Args = new_args();
        a.src = self.raw;
        a.dst = out.as_mut_ptr() as *mut std::ffi::c_void;
        a.dst_size = size;
        pjrt!(api, PJRT_Buffer_ToHostBuffer, &mut a)?;
        // `out` stays alive and untouched until the copy's event completes.
        api.await_event(a.event, "PJRT_Buffer_ToHostBuffer")?;
        Ok(out)
    }

    /// The contents as a Vec of `T`; errors if `T` is not the buffer's element type.
    pub fn to_host<T: NativeType>(&self) -> Result<Vec<T>> {
        if T::TYPE != self.dtype {
            return Err(Error::Dtype {
                buffer: self.dtype,
                asked: T::TYPE,
            });
        }
        let bytes = self.to_host_bytes()?;
        let expected = self.element_count() * self.dtype.byte_size();
        if bytes.len() != expected {
            return Err(Error::Plugin(format!(
                "the plugin returned {} bytes for {}{:?} ({expected} expected)",
                bytes.len(),
                self.dtype,
                self.dims
            )));
        }
        hlo::dtype::from_le_bytes::<T>(&bytes)
            .ok_or_else(|| Error::Plugin("host bytes are not a whole number of elements".into()))
    }
}

impl Client {
    /// Copies `data` (row-major, shape `dims`) to `device`.
    pub fn buffer_from_host<T: NativeType>(
        &self,
        data: &[T],
        dims: &[i64],
        device: &Device,
    ) -> Result<Buffer> {
        let n = element_count(dims)?;
        if n != data.len() {
            return Err(Error::HostSize {
                dtype: T::TYPE,
                dims: dims.to_vec(),
                expected: n * T::TYPE.byte_size(),
                got: data.len() * T::TYPE.byte_size(),
            });
        }
        let bytes = hlo::dtype::to_le_bytes(data);
        self.buffer_from_host_bytes(T::TYPE, &bytes, dims, device)
    }

    /// Copies little-endian `bytes` of element type `dtype` (row-major, shape `dims`) to `device`.
    pub fn buffer_from_host_bytes(
        &self,
        dtype: ElementType,
        bytes: &[u8],
        dims: &[i64],
        device: &Device,
    ) -> Result<Buffer> {
        // Copy semantics: the runtime does not hold `bytes` after the call (zero-copy semantics
        // would let the device alias our slice beyond its lifetime).
        let semantics = ffi::PJRT_HostBufferSemantics_kImmutableOnlyDuringCall;
        let array = HostArray { dtype, bytes, dims };
        let (buffer, done) = self.start_from_host(&array, device, semantics)?;
        self.api()
            .await_event(done, "PJRT_Client_BufferFromHostBuffer")?;
        Ok(buffer)
    }

    /// Copies every array to `device`, the transfers in flight together: each is started with
    /// the runtime free to read the host bytes until its transfer completes (no staging copy
    /// inside the call), and the call returns once all have completed, so the borrowed bytes
    /// outlive every read. Used to place a whole train state at once.
    pub fn buffers_from_host_bytes(
        &self,
        arrays: &[HostArray<'_>],
        device: &Device,
    ) -> Result<Vec<Buffer>> {
        let semantics = ffi::PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes;
        let mut buffers = Vec::with_capacity(arrays.len());
        let mut pending = Vec::with_capacity(arrays.len());
        let mut first_error = None;
        for array in arrays {
            match self.start_from_host(array, device, semantics) {
                Ok((buffer, done)) => {
                    buffers.push(buffer);
                    pending.push(done);
                }
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        // Every started transfer is awaited, even after an error: the runtime may still be
        // reading bytes that the caller frees once this returns.
        let api = self.api();
        for done in pending {
            if let Err(e) = api.await_event(done, "PJRT_Client_BufferFromHostBuffer") {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(buffers),
        }
    }

    /// Starts one host-to-device transfer with `semantics`; returns the buffer and the event
    /// that fires when the runtime is done with the host bytes (the caller awaits it).
    fn start_from_host(
        &self,
        array: &HostArray<'_>,
        device: &Device,
        semantics: std::ffi::c_int,
    ) -> Result<(Buffer, *mut ffi::PJRT_Event)> {
        let HostArray { dtype, bytes, dims } = *array;
        let n = element_count(dims)?;
        let expected = n
            .checked_mul(dtype.byte_size())
            .ok_or_else(|| Error::BadDims(dims.to_vec()))?;
        if bytes.len() != expected {
            return Err(Error::HostSize {
                dtype,
                dims: dims.to_vec(),
                expected,
                got: bytes.len(),
            });
        }
        // A non-null pointer even for empty arrays; static, so it outlives any transfer.
        static EMPTY: [u8; 8] = [0; 8];
        let data = if bytes.is_empty() { &EMPTY[..] } else { bytes };
        let api = self.api();
        let mut a: ffi::PJRT_Client_BufferFromHostBuffer_Args = new_args();
        a.client = self.inner.raw;
        a.data = data.as_ptr() as *const std::ffi::c_void;
        a.type_ = to_pjrt_type(dtype);
        a.dims = dims.as_ptr();
        a.num_dims = dims.len();
        a.host_buffer_semantics = semantics;
        a.device = device.raw;
        pjrt!(api, PJRT_Client_BufferFromHostBuffer, &mut a)?;
        if a.buffer.is_null() {
            api.destroy_event(a.done_with_host_buffer)?;
            return Err(Error::Plugin(
                "PJRT_Client_BufferFromHostBuffer returned no buffer".into(),
            ));
        }
        // Own the buffer before anything else can fail.
        let buffer = Buffer {
            client: self.inner.clone(),
            raw: a.buffer,
            dtype,
            dims: dims.to_vec(),
        };
        Ok((buffer, a.done_with_host_buffer))
    }
}

/// One host array to upload: little-endian `bytes` of `dtype`, row-major, shape `dims`.
#[derive(Clone, Copy, Debug)]
pub struct HostArray<'a> {
    pub dtype: ElementType,
    pub bytes: &'a [u8],
    pub dims: &'a [i64],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_mapping_round_trips_and_differs_from_xla() {
        for t in ElementType::ALL {
            assert_eq!(from_pjrt_type(to_pjrt_type(t)), Some(t));
        }
        // BF16: XLA PrimitiveType 16, PJRT_Buffer_Type 13.
        assert_eq!(to_pjrt_type(ElementType::Bf16), 13);
        assert_eq!(to_pjrt_type(ElementType::F32), 11);
        assert_eq!(from_pjrt_type(14), None); // C64
                                              // F8E4M3FN: XLA PrimitiveType 20, PJRT_Buffer_Type 17.
        assert_eq!(to_pjrt_type(ElementType::F8E4M3FN), 17);
    }

    #[test]
    fn counts() {
        assert_eq!(element_count(&[2, 3]).unwrap(), 6);
        assert_eq!(element_count(&[]).unwrap(), 1);
        assert!(element_count(&[-1, 3]).is_err());
        assert!(element_count(&[i64::MAX, i64::MAX]).is_err());
    }
}
