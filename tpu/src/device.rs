//! `PJRT_Device`: id, kind, process index, local hardware id, memory statistics.
use crate::api::str_from;
use crate::client::ClientInner;
use crate::error::{Error, Result};
use crate::ffi::{self, new_args};
use std::sync::Arc;

/// A device of a client. Holds the client alive.
#[derive(Clone)]
pub struct Device {
    pub(crate) client: Arc<ClientInner>,
    pub(crate) raw: *mut ffi::PJRT_Device,
    id: i32,
    kind: String,
    process_index: i32,
    local_hardware_id: i32,
    addressable: bool,
}

// SAFETY: a PJRT_Device is owned by its client (kept alive by the Arc) and is immutable from the
// caller's side; the C API's device queries are thread-safe.
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl Eq for Device {}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("process_index", &self.process_index)
            .field("local_hardware_id", &self.local_hardware_id)
            .finish()
    }
}

/// `PJRT_Device_MemoryStats`; optional fields are `None` where the plugin does not report them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceMemoryStats {
    pub bytes_in_use: i64,
    pub peak_bytes_in_use: Option<i64>,
    pub num_allocs: Option<i64>,
    pub largest_alloc_size: Option<i64>,
    pub bytes_limit: Option<i64>,
    pub bytes_reserved: Option<i64>,
    pub peak_bytes_reserved: Option<i64>,
    pub largest_free_block_bytes: Option<i64>,
    pub pool_bytes: Option<i64>,
    pub peak_pool_bytes: Option<i64>,
}

impl Device {
    pub(crate) fn from_raw(
        client: &Arc<ClientInner>,
        raw: *mut ffi::PJRT_Device,
    ) -> Result<Device> {
        if raw.is_null() {
            return Err(Error::Plugin("the plugin returned a NULL device".into()));
        }
        let api = client.api();
        let mut d: ffi::PJRT_Device_GetDescription_Args = new_args();
        d.device = raw;
        pjrt!(api, PJRT_Device_GetDescription, &mut d)?;
        let desc = d.device_description;
        let mut a: ffi::PJRT_DeviceDescription_Id_Args = new_args();
        a.device_description = desc;
        pjrt!(api, PJRT_DeviceDescription_Id, &mut a)?;
        let mut k: ffi::PJRT_DeviceDescription_Kind_Args = new_args();
        k.device_description = desc;
        pjrt!(api, PJRT_DeviceDescription_Kind, &mut k)?;
        // SAFETY: the kind string is owned by the device, alive with the client.
        let kind = unsafe { str_from(k.device_kind, k.device_kind_size) };
        let mut p: ffi::PJRT_DeviceDescription_ProcessIndex_Args = new_args();
        p.device_description = desc;
        pjrt!(api, PJRT_DeviceDescription_ProcessIndex, &mut p)?;
        let mut ad: ffi::PJRT_Device_IsAddressable_Args = new_args();
        ad.device = raw;
        pjrt!(api, PJRT_Device_IsAddressable, &mut ad)?;
        let mut h: ffi::PJRT_Device_LocalHardwareId_Args = new_args();
        h.device = raw;
        h.local_hardware_id = -1;
        // Non-addressable devices may not have one; -1 means undefined.
        let local_hardware_id = match pjrt!(api, PJRT_Device_LocalHardwareId, &mut h) {
            Ok(()) => h.local_hardware_id,
            Err(_) => -1,
        };
        Ok(Device {
            client: client.clone(),
            raw,
            id: a.id,
            kind,
            process_index: p.process_index,
            local_hardware_id,
            addressable: ad.is_addressable,
        })
    }

    pub fn id(&self) -> i32 {
        self.id
    }

    /// Vendor string, e.g. "cpu" or "NVIDIA H100 80GB HBM3".
    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn process_index(&self) -> i32 {
        self.process_index
    }

    /// Opaque hardware id (e.g. the CUDA ordinal); -1 if undefined.
    pub fn local_hardware_id(&self) -> i32 {
        self.local_hardware_id
    }

    pub fn is_addressable(&self) -> bool {
        self.addressable
    }

    /// Allocator statistics, `None` where the plugin does not offer them (e.g. the CPU plugin).
    pub fn memory_stats(&self) -> Result<Option<DeviceMemoryStats>> {
        let mut a: ffi::PJRT_Device_MemoryStats_Args = new_args();
        a.device = self.raw;
        match pjrt!(self.client.api(), PJRT_Device_MemoryStats, &mut a) {
            Ok(()) => {}
            Err(Error::ApiTooOld { .. }) => return Ok(None),
            Err(Error::Pjrt { code, .. }) if code == ffi::PJRT_Error_Code_UNIMPLEMENTED => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let opt = |v: i64, set: bool| set.then_some(v);
        Ok(Some(DeviceMemoryStats {
            bytes_in_use: a.bytes_in_use,
            peak_bytes_in_use: opt(a.peak_bytes_in_use, a.peak_bytes_in_use_is_set),
            num_allocs: opt(a.num_allocs, a.num_allocs_is_set),
            largest_alloc_size: opt(a.largest_alloc_size, a.largest_alloc_size_is_set),
            bytes_limit: opt(a.bytes_limit, a.bytes_limit_is_set),
            bytes_reserved: opt(a.bytes_reserved, a.bytes_reserved_is_set),
            peak_bytes_reserved: opt(a.peak_bytes_reserved, a.peak_bytes_reserved_is_set),
            largest_free_block_bytes: opt(
                a.largest_free_block_bytes,
                a.largest_free_block_bytes_is_set,
            ),
            pool_bytes: opt(a.pool_bytes, a.pool_bytes_is_set),
            peak_pool_bytes: opt(a.peak_pool_bytes, a.peak_pool_bytes_is_set),
        }))
    }
}
