-- brainxai auto-routing for Orthanc (tested with Orthanc 1.10).
--
-- When a study becomes stable (no new instance for StableAge seconds), send its original MR
-- series to the brainxai modality with C-STORE. Never route:
--   * non-MR series, and series whose first instance is not an MR storage SOP class
--     (our results are Secondary Capture, Parametric Map and Structured Report objects);
--   * series made by brainxai (Manufacturer contains "brainxai");
--   * series already routed with the same number of instances (our results arriving in the
--     study make it unstable, then stable, again; without this check every result would
--     re-trigger the analysis). A series that gained instances is routed again, whole.
--
-- Lua's SendToModality does not accept study IDs in Orthanc 1.10, so the script posts the
-- series IDs to /modalities/<name>/store as an asynchronous Orthanc job. A series is marked
-- as routed (user metadata "BrainxaiRouted" = instance count) only when that job succeeded
-- (OnJobSuccess). A job that failed (brainxai down, or an instance refused with 0xA700
-- "out of resources" because brainxai could not record it yet) is re-submitted
-- (POST /jobs/<id>/resubmit) after a delay, RETRY_DELAYS[k] seconds before the k-th retry;
-- after the last one the failure is printed and the series stay unmarked (send them
-- manually, or they go with the study's next routing).
--
-- Per-instance mode ("Brainxai": { "Routing": "instance" } in orthanc.json; the default is
-- "study"): each original MR instance is sent to brainxai as soon as it is stored
-- (OnStoredInstance, one asynchronous store job per instance), without waiting for StableAge;
-- brainxai assembles the study by association end + its quiet period, as for any sender.
-- OnStableStudy then routes nothing. Failed jobs are retried as above; a retry waits until
-- RETRY_DELAYS[k] seconds have passed since the job's last submission (so many instances
-- failing at once, brainxai down, do not each hold the Lua thread for the full delay).
--
-- Orthanc 1.10 has no timer for Lua (OnHeartBeat needs 1.11.1+), so the delay is a sleep
-- in OnJobFailure: it holds Orthanc's Lua thread (other Lua events wait, DICOM and REST do
-- not), which is why the delays are short. The jobs being retried are known to this Lua
-- context only: after a restart of Orthanc a failed store is not retried.

local TARGET = 'brainxai'        -- the entry in DicomModalities
local MARK = 'BrainxaiRouted'    -- declared in "UserMetadata"
local RETRY_DELAYS = { 2, 5, 10, 20 }  -- seconds before each re-submission of a failed store
local MR_STORAGE = {
  ['1.2.840.10008.5.1.4.1.1.4'] = true,    -- MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.1'] = true,  -- Enhanced MR Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.3'] = true,  -- Enhanced MR Color Image Storage
  ['1.2.840.10008.5.1.4.1.1.4.4'] = true,  -- Legacy Converted Enhanced MR Image Storage
}

local function RoutingMode()
  local section = GetOrthancConfiguration()['Brainxai']
  if type(section) == 'table' and section['Routing'] == 'instance' then
    return 'instance'
  end
  return 'study'
end
local MODE = RoutingMode()

-- Store jobs of ours not yet finished: job ID -> { study, counts (series ID -> n), retries,
-- submitted (os.time() of the last submission), what (for the log) }
local pending = {}

local function HasMetadata(level, id, name)
  local names = ParseJson(RestApiGet('/' .. level .. '/' .. id .. '/metadata'))
  for _, n in ipairs(names) do
    if n == name then
      return true
    end
  end
  return false
end

local function RoutedCount(seriesId)
  if not HasMetadata('series', seriesId, MARK) then
    return 0
  end
  return tonumber(RestApiGet('/series/' .. seriesId .. '/metadata/' .. MARK)) or 0
end

local function IsOriginalMr(series)
  local tags = series['MainDicomTags']
  if tags['Modality'] ~= 'MR' then
    return false
  end
  local manufacturer = string.lower(tags['Manufacturer'] or '')
  if string.find(manufacturer, 'brainxai', 1, true) then
    return false
  end
  local first = series['Instances'][1]
  if first == nil or not HasMetadata('instances', first, 'SopClassUid') then
    return false
  end
  return MR_STORAGE[RestApiGet('/instances/' .. first .. '/metadata/SopClassUid')] == true
end

local function Sleep(seconds)
  os.execute('sleep ' .. tonumber(seconds))
end

local function IsOriginalMrInstance(tags, metadata)
  if tags['Modality'] ~= 'MR' then
    return false
  end
  if string.find(string.lower(tags['Manufacturer'] or ''), 'brainxai', 1, true) then
    return false
  end
  return MR_STORAGE[metadata['SopClassUid'] or tags['SOPClassUID'] or ''] == true
end

local function SubmitStore(resources, studyId, counts, what, retries)
  local body = DumpJson({ Resources = resources, Synchronous = false }, true)
  local answer = RestApiPost('/modalities/' .. TARGET .. '/store', body)
  if answer == nil then
    print('brainxai routing: store of study ' .. studyId .. ' to ' .. TARGET .. ' failed')
    return nil
  end
  local jobId = ParseJson(answer)['ID']
  pending[jobId] = { study = studyId, counts = counts, retries = retries or 0,
                     submitted = os.time(), what = what, resources = resources }
  print('brainxai routing: sending ' .. what .. ' of study ' .. studyId .. ' to ' .. TARGET
        .. ' (job ' .. jobId .. ')')
  return jobId
end

function OnStoredInstance(instanceId, tags, metadata, origin)
  if MODE ~= 'instance' or not IsOriginalMrInstance(tags, metadata) then
    return
  end
  local parent = ParseJson(RestApiGet('/instances/' .. instanceId .. '/study'))
  SubmitStore({ instanceId }, parent['ID'], {}, 'instance ' .. instanceId)
end

function OnStableStudy(studyId, tags, metadata)
  if MODE ~= 'study' then
    return
  end
  local toSend = {}
  local counts = {}
  for _, series in ipairs(ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))) do
    local n = #series['Instances']
    if IsOriginalMr(series) and n > RoutedCount(series['ID']) then
      table.insert(toSend, series['ID'])
      counts[series['ID']] = n
    end
  end
  if #toSend == 0 then
    return
  end
  SubmitStore(toSend, studyId, counts, #toSend .. ' series')
end

function OnJobSuccess(jobId)
  local job = pending[jobId]
  if job == nil then
    return
  end
  pending[jobId] = nil
  for id, n in pairs(job.counts) do
    RestApiPut('/series/' .. id .. '/metadata/' .. MARK, tostring(n))
  end
  print('brainxai routing: sent ' .. job.what .. ' of study ' .. job.study .. ' to ' .. TARGET)
end

function OnJobFailure(jobId)
  local job = pending[jobId]
  if job == nil then
    return
  end
  job.retries = job.retries + 1
  local delay = RETRY_DELAYS[job.retries]
  if delay == nil then
    pending[jobId] = nil
    print('brainxai routing: store of study ' .. job.study .. ' to ' .. TARGET .. ' failed '
          .. (job.retries - 1) .. ' retries: given up (job ' .. jobId .. ')')
    return
  end
  print('brainxai routing: store of study ' .. job.study .. ' to ' .. TARGET .. ' failed; retry '
        .. job.retries .. ' in ' .. delay .. ' s (job ' .. jobId .. ')')
  local wait = delay - (os.time() - job.submitted)
  if wait > 0 then
    Sleep(wait)
  end
  job.submitted = os.time()
  if RestApiPost('/jobs/' .. jobId .. '/resubmit', '{}') == nil then
    -- The failed job may have left Orthanc's jobs history (JobsHistorySize, 10 by default:
    -- per-instance routing finishes many jobs meanwhile). Send its resources again as a new
    -- job, keeping the retry count, so that no instance is left behind.
    pending[jobId] = nil
    if SubmitStore(job.resources, job.study, job.counts, job.what, job.retries) == nil then
      print('brainxai routing: store of study ' .. job.study .. ' to ' .. TARGET
            .. ' could not be re-submitted (job ' .. jobId .. ')')
    end
  end
end
